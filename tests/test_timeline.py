"""A segment's timeline: the marks and stalls of its status file, and rank 0's heartbeat."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FakeClock
from torch import nn

import batcher
from batcher.api.saves import Committed
from batcher.api.timeline import Timeline
from batcher.run.heartbeat import read_heartbeat


@dataclass
class _Saves:
    """What the timeline reads of a segment's saves."""

    committed: Committed = field(default_factory=Committed)
    held_s: float = 0.0


def _timeline(path: Path, said: list[str], *, beating: bool = True) -> Timeline:
    return Timeline(
        path, segment=3, attempt="77", launched=100.0, beating=beating, say=said.append, every_s=10.0
    )


def test_a_heartbeat_at_the_first_boundary_then_every_interval_and_at_each_commit(tmp_path: Path) -> None:
    path, said = tmp_path / "hb" / "seg-0003-77.json", []
    tl = _timeline(path, said)
    tl.mark(segment=104.0, training=105.0)
    saves: Any = _Saves(Committed(step=40, at=105.0))
    tl.beat(105.0, 40, saves)
    first = read_heartbeat(path)
    assert first is not None and (first.segment, first.attempt, first.step, first.first_step) == (
        3,
        "77",
        40,
        40,
    )
    assert first.timeline == {"launched": 100.0, "segment": 104.0, "training": 105.0}
    tl.beat(114.0, 49, saves)  # within the interval: not written
    assert read_heartbeat(path) == first
    tl.beat(115.0, 50, saves)
    assert read_heartbeat(path).step == 50  # type: ignore[union-attr]
    saves.committed, saves.held_s = Committed(step=52, at=117.0, held_s=0.5), 0.5
    tl.beat(117.5, 52, saves)  # a commit: written at once
    beat = read_heartbeat(path)
    assert beat is not None and (beat.committed_step, beat.committed_at, beat.held_at_commit) == (
        52,
        117.0,
        0.5,
    )
    assert beat.first_step == 40 and beat.step == 52 and said == []


def test_only_rank_0_beats_and_a_failed_write_is_said_once_and_training_goes_on(tmp_path: Path) -> None:
    said: list[str] = []
    quiet = _timeline(tmp_path / "rank1.json", said, beating=False)
    quiet.beat(1.0, 1, _Saves())  # type: ignore[arg-type]
    assert not (tmp_path / "rank1.json").exists()
    (tmp_path / "full").write_text("")  # a file where the heartbeat's folder should be: the write fails
    tl = _timeline(tmp_path / "full" / "seg-0003-77.json", said)
    for t in (1.0, 20.0, 40.0):
        tl.beat(t, int(t), _Saves())  # type: ignore[arg-type]
    assert len(said) == 1 and said[0].startswith("WARNING: heartbeat not written"), said


def test_stopping_keeps_the_stalls_before_it(tmp_path: Path) -> None:
    tl = _timeline(tmp_path / "b.json", [])
    tl.stopping(200.0, held_s=1.25)
    assert tl.marks["stopping"] == 200.0 and tl.stalls_s == 1.25


def _segment(tmp_path: Path, clock: FakeClock) -> tuple[Any, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seg = batcher.segment(
        run_dir=tmp_path / "run", model=model, optimizer=opt, clock=clock, out=io.StringIO(),
        progress_every_s=0, margin_s=5.0, save_every="10 steps",
    )  # fmt: skip
    return seg, model, opt


def test_a_segment_writes_its_heartbeat_and_its_status_splits_stalls_from_the_final_save(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("BATCHER_LAUNCHED", str(clock.now - 4.0))
    seg, model, opt = _segment(tmp_path, clock)
    for _ in seg.range(2):
        for _ in seg.iterate(range(12)):
            model(torch.ones(1, 3)).sum().backward()
            opt.step()
            clock.advance(3.0)
    seg.done()
    (beat_file,) = (tmp_path / "run" / "heartbeat").iterdir()
    assert beat_file.name == f"seg-0000-pid{os.getpid()}.json"
    beat = read_heartbeat(beat_file)
    # the step-10 save was committed by step 20's save at the latest; the step-20 one's commit is
    # seen at the first boundary after its write ended, or not before the end (a slow disk)
    assert beat is not None and beat.committed_step in (10, 20) and beat.first_step == 0 and beat.step >= 20
    status = json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())
    assert status["attempt"] == f"pid{os.getpid()}"
    timeline, seconds = status["timeline"], status["seconds"]
    assert list(timeline) == ["launched", "segment", "training", "stopping", "saved", "status"]
    assert timeline["stopping"] - timeline["training"] == 24 * 3.0  # the fake clock stands still in saves
    assert 0.0 <= seconds["stalls"] <= seconds["save"]
