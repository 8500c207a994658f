"""Captured state: seg.values with tensors, compiled and plain modules, sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from batcher.ckpt.captured import load_objects, load_values, save_values, state_bytes
from batcher.errors import BatcherError


def test_values_hold_tensors_and_containers_as_copies() -> None:
    h = torch.ones(3)
    saved = save_values({"h": h, "hist": [1, (2.0, None)], "d": {"x": torch.zeros(2)}})
    h.add_(1)  # training goes on changing the original
    assert torch.equal(saved["h"], torch.ones(3)) and saved["hist"] == [1, (2.0, None)]
    back = load_values(saved, {"h": torch.zeros(3)})
    assert torch.equal(back["h"], torch.ones(3)) and torch.equal(back["d"]["x"], torch.zeros(2))
    assert load_values('{"best": 1}', {}) == {"best": 1}  # state format 1: JSON
    with pytest.raises(
        BatcherError, match=r"seg\.values\['f'\] is a function, which a checkpoint cannot hold"
    ):
        save_values({"f": lambda: 0})


def test_compiled_state_loads_into_a_plain_module_and_back() -> None:
    plain = nn.Linear(2, 1)
    prefixed = {f"_orig_mod.{k}": v + 1 for k, v in plain.state_dict().items()}
    load_objects({"model": plain}, {"model": prefixed}, where="x")
    assert torch.equal(plain.weight, prefixed["_orig_mod.weight"])
    assert (
        state_bytes({"a": torch.zeros(4), "b": [torch.zeros(2, dtype=torch.float64)], "c": 1}) == 16 + 16 + 16
    )
