"""A checkpoint's contents captured from a segment and put back in another, in one process."""

from __future__ import annotations

import signal
from pathlib import Path

import torch

from batcher.api.carried import Carried
from batcher.api.counting import LoopCount
from batcher.api.objects import TrainingObjects
from batcher.api.replay import EpochReplay
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.store import CheckpointStore
from batcher.ckpt.training_state import Position
from batcher.stopping.deadline import Deadline
from batcher.stopping.decision import DeadlineSeconds, StopDecision
from batcher.stopping.signals import StopSignals


def _segment(seed: int) -> tuple[Carried, LoopCount, StopDecision, torch.nn.Module, dict[str, int]]:
    torch.manual_seed(seed)
    model, values = torch.nn.Linear(4, 4), {"best": 0}
    objects = TrainingObjects({"model": model}, values)
    deadline = DeadlineSeconds(Deadline(None, "none", {}, ()))
    stop = StopDecision(
        deadline, margin_s=None, signals=StopSignals([signal.SIGUSR1]), slurm_warning=None, say=print
    )
    count = LoopCount()
    carried = Carried(objects, Ranks(), stop, count, EpochReplay(), segment=seed)
    return carried, count, stop, model, objects.values


def test_what_is_captured_comes_back_with_the_rng_put_back_once() -> None:
    carried, count, stop, model, values = _segment(1)
    count.resumed_at(Position(epoch=2, batch=0, step=30, tick=32), uses_iterate=False)
    count.total = 5
    values["best"] = 7
    for _ in range(5):
        stop.measured("epoch", 3.0, first=False)
    state = carried.capture(metrics_seq=4, done=False).encode()
    expected = torch.rand(3)  # what the RNG gives next at the checkpoint

    other, other_count, other_stop, other_model, other_values = _segment(2)
    assert other.restore(state, where="test", saves=[(0.5, 1000)]) is None  # same world: no rescale
    assert torch.equal(other_model.weight, model.weight) and other_values == {"best": 7}
    assert other_count.pos == Position(epoch=2, batch=0, step=30, tick=32)
    assert other_count.first_step and not other_count.uses_iterate
    assert other.metrics_seq == 4 and not other.done
    assert other_stop.epoch_time.median() == 3.0 and len(other_stop.save_time.history()) == 1
    other.put_back_rng()
    assert torch.equal(torch.rand(3), expected)
    other.put_back_rng()  # once only: the second call leaves the RNG alone
    assert not torch.equal(torch.rand(3), expected)


def test_load_takes_the_newest_checkpoint_and_says_what_it_passed_over(tmp_path: Path) -> None:
    carried, count, _, _, _ = _segment(1)
    count.resumed_at(Position(epoch=1, step=10, tick=11), uses_iterate=False)
    store = CheckpointStore(tmp_path / "ckpt", keep=3)
    store.save(carried.capture(metrics_seq=1, done=False).encode(), step=10, segment=0)
    count.resumed_at(Position(epoch=2, step=20, tick=22), uses_iterate=False)
    newest = store.save(carried.capture(metrics_seq=2, done=True).encode(), step=20, segment=0)
    store.wait_for_cleanup()
    (store.directory / newest.file).write_bytes(b"damaged")
    other, other_count, _, _, _ = _segment(2)
    said: list[str] = []
    loaded = other.load(store, say=said.append)
    assert loaded is not None and loaded.info.step == 10
    assert other_count.pos.step == 10 and other.metrics_seq == 1 and not other.done
    assert len(said) == 1 and said[0].startswith("WARNING:") and newest.file in said[0]
    empty, _, _, _, _ = _segment(3)
    assert empty.load(CheckpointStore(tmp_path / "none", keep=3), say=said.append) is None
