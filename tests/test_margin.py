"""The stop margin learned from the run's own prediction errors, with injected clocks."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime
from pathlib import Path

import pytest
import torch
from conftest import FakeClock
from torch import nn

import batcher
from batcher.ckpt.store import CheckpointStore
from batcher.stopping.margin import DEFAULT_MARGIN_S, FLOOR_S, MIN_STEPS, LearnedMargin


def test_no_evidence_is_the_default_a_predictable_run_the_floor_a_surprise_grows_it() -> None:
    margin = LearnedMargin()
    assert margin.seconds == DEFAULT_MARGIN_S
    for _ in range(MIN_STEPS - 1):
        margin.step(1.0, 1.0)
    assert margin.seconds == DEFAULT_MARGIN_S  # not enough evidence yet
    margin.step(1.0, 1.05)
    assert margin.seconds == pytest.approx(FLOOR_S + 0.05)
    margin.step(1.0, 9.0)  # a step 8 s late
    assert margin.seconds == pytest.approx(FLOOR_S + 8.0)
    margin.save(1.0, 4.0)
    assert margin.seconds == pytest.approx(FLOOR_S + 8.0 + 3.0)
    carried = LearnedMargin(history=margin.history())  # the next segment knows the same
    assert carried.seconds == margin.seconds
    assert LearnedMargin(fixed_s=7.0, history=margin.history()).seconds == 7.0  # given: fixed
    overrun = LearnedMargin(history={"steps": [0.0] * MIN_STEPS})
    overrun.overran(5.0)
    assert overrun.seconds == pytest.approx(FLOOR_S + 5.0)


def test_a_damaged_history_is_ignored_not_trusted() -> None:
    margin = LearnedMargin(history={"steps": [1.0, "x", -3.0, float("nan")], "saves": [None]})
    assert margin.history() == {"steps": [1.0], "saves": []}


def _chain(
    tmp_path: Path, clock: FakeClock, durations: list[float], *, segments: int, slot_s: float
) -> list[dict]:
    """Segments of ``slot_s`` seconds over steps of the given durations; a save takes 0.5 s of
    the fake clock (the store's hook before its fsync)."""
    store_clock = clock

    def fault(label: str) -> None:
        if label == "checkpoint:before-fsync":
            store_clock.advance(0.5)

    steps = iter(durations)
    statuses = []
    for n in range(segments):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        out = io.StringIO()
        store = CheckpointStore(tmp_path / "run" / "ckpt", keep=2, fault=fault)
        seg = batcher.segment(
            run_dir=tmp_path / "run", model=model, optimizer=opt, clock=clock, out=out,
            time_limit=f"{slot_s}s", store=store, progress_every_s=0, save_every="off",
        )  # fmt: skip
        with pytest.raises(batcher.SegmentStopped):
            for _ in seg.range(10**6):
                clock.advance(next(steps))
                opt.step()
        status = json.loads((tmp_path / "run" / "status" / f"seg-{n:04d}.json").read_text())
        status["opened"] = out.getvalue().splitlines()[0]
        ended, deadline = (datetime.fromisoformat(status[k]) for k in ("ended", "deadline"))
        status["spare_s"] = (deadline - ended).total_seconds()
        statuses.append(status)
        clock.advance(30.0)  # the queue
    return statuses


def test_steady_steps_bring_the_margin_to_the_floor_within_a_few_segments(
    tmp_path: Path, clock: FakeClock
) -> None:
    statuses = _chain(tmp_path, clock, [1.0] * 10_000, segments=4, slot_s=120)
    assert "margin 15.0s (default until" in statuses[0]["opened"]  # no evidence yet
    assert f"margin {FLOOR_S:.1f}s (learned from" in statuses[1]["opened"]
    spare = [s["spare_s"] for s in statuses]
    # the slot used down to the floor, plus less than a step and the save's safety factor
    assert all(0 <= x < FLOOR_S + 1.0 + 1.0 for x in spare), spare


def test_noisy_steps_never_miss_the_deadline(tmp_path: Path, clock: FakeClock) -> None:
    """5 % of the steps 5x slower (seeded): the margin learns the surprise and no segment of many
    ends after its deadline."""
    rng = random.Random(27)
    durations = [5.0 if rng.random() < 0.05 else 1.0 for _ in range(20_000)]
    statuses = _chain(tmp_path, clock, durations, segments=25, slot_s=90)
    spare = [s["spare_s"] for s in statuses]
    assert all(x >= 0 for x in spare), spare
    assert min(spare[3:]) < 15  # and it uses more of the slot than the fixed 15 s would
