"""batcher.ElasticSampler: DistributedSampler's order, resumable at any global sample count on any
number of ranks; and the ledger of a real run moved 2 -> 1 -> 2 ranks mid-epoch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import ledger_epochs, run_ranks
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import batcher
from batcher import BatcherError, ElasticSampler
from batcher.api.elastic import begin_pass
from batcher.ckpt.training_state import Position


def _data(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n))


@pytest.mark.parametrize("n", [16, 17, 90, 91])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize(("shuffle", "drop_last"), [(True, False), (True, True), (False, False)])
def test_from_the_start_it_is_distributed_samplers_order(
    n: int, world: int, shuffle: bool, drop_last: bool
) -> None:
    for epoch in (0, 5):
        for rank in range(world):
            ours = ElasticSampler(_data(n), world, rank, shuffle=shuffle, seed=3, drop_last=drop_last)
            theirs = DistributedSampler(_data(n), world, rank, shuffle=shuffle, seed=3, drop_last=drop_last)
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)


def _segment_steps(n: int, batch: int, plan: list[tuple[int, int]]) -> tuple[Counter[int], int]:
    """Train one epoch of ``n`` samples as the loop does: each (world, steps) of ``plan`` is a
    segment on ``world`` ranks that stops after ``steps`` steps (the last one runs to the epoch's
    end). Returns how often each index was seen and the padding the last segment added."""
    seen: Counter[int] = Counter()
    consumed, padding = 0, 0
    for i, (world, steps) in enumerate(plan):
        samplers = [ElasticSampler(_data(n), world, r, seed=7) for r in range(world)]
        for s in samplers:
            s.set_epoch(2)
            s.begin_at(consumed)
        orders = [list(s) for s in samplers]
        assert len({len(o) for o in orders}) == 1, "every rank has as many samples (no collective waits)"
        last = i == len(plan) - 1
        taken = len(orders[0]) if last else steps * batch
        for o in orders:
            seen.update(o[:taken])
        if last:
            padding = world * len(orders[0]) - (n - consumed)
        consumed += steps * batch * world
    return seen, padding


@pytest.mark.parametrize(
    "plan",
    [
        [(2, 3), (1, 5), (2, 0)],  # 2 -> 1 -> 2 ranks
        [(1, 1), (2, 1), (1, 2), (3, 0)],
        [(3, 2), (2, 0)],
        [(2, 5), (1, 0)],  # stopped on the epoch's last full step
    ],
)
@pytest.mark.parametrize("n", [90, 91, 97])
def test_each_index_once_across_changes_of_world_size(plan: list[tuple[int, int]], n: int) -> None:
    seen, padding = _segment_steps(n, 8, plan)
    assert set(seen) == set(range(n))
    assert sum(seen.values()) - n == padding < plan[-1][0]  # only the last step's padding repeats


def test_begin_pass_plans_an_elastic_sampler_to_start_after_the_samples_done() -> None:
    data = _data(91)
    loader = DataLoader(data, batch_size=8, sampler=ElasticSampler(data, 1, 0))
    plan = begin_pass(loader, Position(epoch=0, batch=6, samples=88), world=1)
    # 3 samples left: one batch after the 6 counted as done (88 samples were 11 steps on 2 ranks
    # of 4 each... any split: the loop only needs done + left)
    assert (plan.length, plan.skip, plan.per_step, plan.mid_epoch) == (7, 0, 8, True)
    assert [int(b[0].numel()) for b in loader] == [3]
    fresh = begin_pass(loader, Position(epoch=1), world=1)
    assert (fresh.length, fresh.skip, fresh.mid_epoch) == (12, 0, False)


def test_begin_pass_leaves_other_loaders_to_the_replay() -> None:
    data = _data(32)
    plain = DataLoader(data, batch_size=4, sampler=DistributedSampler(data, 2, 0))
    plan = begin_pass(plain, Position(batch=2, samples=16), world=2)
    assert (plan.length, plan.skip, plan.per_step, plan.mid_epoch) == (4, 2, 8, True)
    assert begin_pass(range(5), Position(batch=1), world=1) == type(plan)(5, 1, 0, True)


def test_a_wrong_elastic_setup_is_refused_with_how_to_fix_it() -> None:
    data = _data(32)
    sampler = ElasticSampler(data, 2, 0)
    with pytest.raises(BatcherError, match=r"made for 2 rank.*runs on 1.*after torch\.distributed"):
        begin_pass(DataLoader(data, batch_size=4, sampler=sampler), Position(), world=1)
    batches = DataLoader(data, batch_sampler=_Batches(sampler))  # a batch sampler without a size
    with pytest.raises(BatcherError, match="needs a DataLoader with a batch size"):
        begin_pass(batches, Position(), world=2)
    with pytest.raises(BatcherError, match="rank 2 is not in"):
        ElasticSampler(data, 2, 2)
    with pytest.raises(BatcherError, match=r"begin at sample 40 of an epoch of 32.*dataset changed"):
        sampler.begin_at(40)


class _Batches:
    def __init__(self, sampler: ElasticSampler) -> None:
        self.sampler = sampler

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([[0, 1]])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_moved_between_2_and_1_ranks_mid_epoch_trains_each_sample_once(
    tmp_path: Path, workers: int
) -> None:
    """The ledger: a DDP run with ElasticSampler over 91 samples, 8 per rank and step, stopped by a
    signal on 2 ranks after step 3, on 1 rank after step 8, killed on 2 ranks at step 17 (after a
    periodic save at step 14 or 16), finished on 1 rank: every index of every epoch was trained
    on exactly once, but for the padding of an epoch's last step on 2 ranks (as DistributedSampler)."""
    run, ledger = tmp_path / "run", tmp_path / "ledger"
    ledger.mkdir()
    base = ["--elastic", "--samples", "91", "--epochs", "3", "--workers", str(workers)]
    plan: list[tuple[int, list[str], dict[str, str]]] = [
        (2, ["--signal-at-step", "3"], {}),
        (1, ["--signal-at-step", "8"], {}),
        (2, ["--kill-at-step", "17"], {"save_every": "2 steps"}),
        (1, [], {}),
    ]
    for k, (world, extra, opts) in enumerate(plan):
        procs = run_ranks(run, [*base, *extra, "--ledger", str(ledger / f"seg{k}")], world=world, **opts)  # type: ignore[arg-type]
        codes = [p.returncode for p in procs]
        assert codes == ([-9] * world if "--kill-at-step" in extra else [0] * world), [
            p.stderr[-2000:] for p in procs
        ]
    assert "resumes on 1" in procs[0].stderr and "ElasticSampler keeps" in procs[0].stderr
    final = batcher.load_checkpoint(run)
    assert final["done"] and final["epoch"] == 3
    epochs = ledger_epochs([ledger / f"seg{k}" for k in range(len(plan))])
    assert sorted(epochs) == [0, 1, 2]
    for epoch, seen in epochs.items():
        assert set(seen) == set(range(91)), f"epoch {epoch} left out {set(range(91)) - set(seen)}"
        twice = sorted(i for i, c in seen.items() if c > 1)
        assert len(twice) <= 1 and all(seen[i] == 2 for i in twice), f"epoch {epoch} repeated {twice}"
