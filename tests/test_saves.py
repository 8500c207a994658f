"""A segment's saves over a real checkpoint store: at once, in the background, dirty or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from batcher.api.objects import TrainingObjects
from batcher.api.saves import SegmentSaves
from batcher.ckpt.manifest import CheckpointInfo
from batcher.ckpt.periodic import SaveEvery
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.store import CheckpointStore
from batcher.run.metrics import MetricLog
from batcher.stopping.decision import NO_STOP, SAVE


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.5  # every reading half a second later
        return self.t


def _saves(tmp_path: Path, every: SaveEvery) -> tuple[SegmentSaves, list[Any], list[Any], CheckpointStore]:
    store = CheckpointStore(tmp_path / "ckpt", keep=3)
    objects = TrainingObjects({"model": torch.nn.Linear(8, 8)}, {})
    saved: list[CheckpointInfo] = []
    background: list[tuple[CheckpointInfo, float]] = []
    saves = SegmentSaves(
        store, Ranks(), objects, MetricLog(tmp_path / "metrics.jsonl"), every, clock=Clock(),
        on_saved=saved.append, on_background=lambda info, stall: background.append((info, stall)),
    )  # fmt: skip
    return saves, saved, background, store


def _state(step: int) -> Any:
    return lambda: {"w": torch.full((16,), float(step)), "step": step}


def test_a_save_at_once_is_committed_measured_and_leaves_nothing_dirty(tmp_path: Path) -> None:
    saves, saved, background, store = _saves(tmp_path, SaveEvery())
    saves.restart(0.0, step=0, tick=0)
    assert not saves.dirty(0) and saves.dirty(1)
    guess = saves.size()  # before any save: the objects' tensors
    assert guess >= 8 * 8 * 4
    saves.save(_state(5), step=5, segment=0, tick=6, now=1.0, background=False)
    assert [i.step for i in saved] == [5] and saves.last is saved[0] and background == []
    assert saves.size() == saved[0].size != guess  # the last checkpoint's size from now on
    assert saves.held_s == pytest.approx(0.5)  # the injected clock: one reading apart
    assert not saves.dirty(6) and saves.dirty(7)
    assert store.load_latest().info.step == 5  # type: ignore[union-attr]


def test_a_background_save_is_reported_once_and_a_request_makes_one_due(tmp_path: Path) -> None:
    saves, saved, background, store = _saves(tmp_path, SaveEvery(steps=2))
    saves.restart(0.0, step=0, tick=0)
    assert saves.due(1.0, 1, end=None) == NO_STOP
    assert saves.due(1.0, 2, end=None) == SAVE
    saves.save(_state(2), step=2, segment=0, tick=2, now=1.0, background=True)
    assert not saves.dirty(2)
    saves.request()  # seg.save(): due at the next boundary, though 2 steps have not passed
    assert saves.due(2.0, 3, end=None) == SAVE
    saves.wait()  # the background save in flight is committed and heard of once
    assert [i.step for i in saved] == [2] and [i.step for i, _ in background] == [2]
    saves.save(_state(3), step=3, segment=0, tick=3, now=2.0, background=True)
    saves.wait()
    assert [i.step for i in saved] == [2, 3] and len(background) == 2 and saves.last is saved[-1]
    saves.save(_state(4), step=4, segment=0, tick=4, now=3.0, background=True)
    saves.close()  # the segment ends: the write in flight finishes, committed
    assert store.load_latest().info.step == 4  # type: ignore[union-attr]


def test_a_resumed_checkpoint_is_the_last_and_sizes_the_next(tmp_path: Path) -> None:
    saves, saved, _, _ = _saves(tmp_path, SaveEvery())
    info = CheckpointInfo("step-000000007.pt", 7, 1, "d", 12345, 0.2)
    saves.resumed(info, tick=9)
    assert saves.last is info and saves.size() == 12345 and not saves.dirty(9) and saved == []
