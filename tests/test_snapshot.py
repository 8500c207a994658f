"""Host copies of the state for background saves: independent of later in-place changes, sharing kept,
buffers reused."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from batcher.ckpt.snapshot import HostSnapshot


def test_a_snapshot_does_not_see_later_in_place_changes() -> None:
    model = nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "n": 3, "name": "x", "t": (1, [2.0])}
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    exp_avg = opt.state_dict()["state"][0]["exp_avg"].clone()
    snap = HostSnapshot().take(state)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()  # changes parameters and optimizer state in place
    for k, v in expected.items():
        assert torch.equal(snap["model"][k], v)
        assert not torch.equal(model.state_dict()[k], v)
    assert torch.equal(snap["opt"]["state"][0]["exp_avg"], exp_avg)
    assert isinstance(snap["model"], OrderedDict)
    assert (snap["n"], snap["name"], snap["t"]) == (3, "x", (1, [2.0]))


def test_shared_storages_stay_shared_and_views_keep_their_place() -> None:
    base = torch.arange(10.0)
    state = {"a": base, "b": base, "view": base[2:5], "strided": base[::2]}
    snap = HostSnapshot().take(state)
    assert snap["a"].untyped_storage().data_ptr() == snap["b"].untyped_storage().data_ptr()
    assert snap["view"].untyped_storage().data_ptr() == snap["a"].untyped_storage().data_ptr()
    assert snap["view"].tolist() == [2.0, 3.0, 4.0] and snap["strided"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert base.untyped_storage().data_ptr() != snap["a"].untyped_storage().data_ptr()


def test_buffers_are_reused_by_the_next_snapshot_and_freed_with_their_tensor() -> None:
    snapper = HostSnapshot()
    w, gone = torch.ones(1000), torch.ones(10)
    first = snapper.take({"w": w, "gone": gone})["w"]
    ptr = first.untyped_storage().data_ptr()
    w.add_(1)
    second = snapper.take({"w": w})["w"]
    assert second.untyped_storage().data_ptr() == ptr  # no new allocation
    assert second[0].item() == 2.0
    assert snapper.nbytes == 4000  # the buffer of a tensor no longer in the state is dropped
    snapper.release()
    assert snapper.nbytes == 0


def test_empty_tensors_and_other_dtypes() -> None:
    state = {"e": torch.empty(0), "i": torch.tensor([1, 2], dtype=torch.int64), "b": torch.tensor([True])}
    snap = HostSnapshot().take(state)
    assert snap["e"].numel() == 0 and snap["i"].dtype == torch.int64 and snap["b"].tolist() == [True]


def test_prepared_buffers_take_the_values_of_the_moment_of_the_snapshot() -> None:
    snapper = HostSnapshot()
    w = torch.zeros(1000)
    snapper.prepare({"w": w, "n": 1})
    w.add_(5)  # training goes on between prepare and take
    copied = snapper.take({"w": w, "n": 1})
    w.add_(1)
    assert copied["w"].eq(5).all() and snapper.nbytes == 4000
