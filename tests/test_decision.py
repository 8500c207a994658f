"""The stop decision at a step boundary, with fixed instants: no process, no sleeping."""

from __future__ import annotations

import signal
from datetime import datetime, timezone

from batcher.stopping.deadline import Deadline
from batcher.stopping.decision import DEADLINE, NO_STOP, SIGNAL, DeadlineSeconds, StopDecision
from batcher.stopping.signals import StopSignals
from batcher.stopping.slurm import SlurmWarning

T0 = 1_800_000_000.0


def _decision(at: float | None, *, warning: SlurmWarning | None = None) -> tuple[StopDecision, list[str]]:
    said: list[str] = []
    when = None if at is None else datetime.fromtimestamp(at, tz=timezone.utc)
    deadline = DeadlineSeconds(Deadline(when, "test" if when else "none", {}, ()))
    stop = StopDecision(
        deadline, margin_s=5.0, signals=StopSignals([signal.SIGUSR1]), slurm_warning=warning, say=said.append
    )
    return stop, said


def test_deadline_stops_when_the_next_step_and_save_would_not_fit() -> None:
    stop, _ = _decision(T0 + 100)
    for _ in range(20):
        stop.measured("batch", 2.0, first=False)
    stop.saved(1.0, 1000)
    size = lambda: 1000  # noqa: E731
    # next step 2 s, save 1.5 x 1 s + 0.2 s, margin 5 s: stop once fewer than 8.7 s remain
    assert stop.check(T0 + 91.0, ("batch",), size).code == NO_STOP
    verdict = stop.check(T0 + 91.5, ("batch",), size)
    assert verdict.code == DEADLINE and verdict.step_s == 2.0 and abs(verdict.save_s - 1.7) < 1e-9


def test_a_step_begins_only_when_it_and_a_save_end_a_margin_before_the_deadline() -> None:
    """#27: a step predicted at 40 s was begun with 19.8 s left. Steps of 40 s, a 1 s save
    (predicted 1.7 s), a 5 s margin: a step begins with 46.7 s left, not with 46.6 s or 19.8 s;
    before an epoch's last batch, the batch and the epoch's tail (after it) count together."""
    stop, _ = _decision(T0 + 100)
    for _ in range(12):
        stop.measured("batch", 40.0, first=False)
        stop.measured("epoch", 10.0, first=False)
    stop.saved(1.0, 1000)
    size = lambda: 1000  # noqa: E731
    assert stop.check(T0 + 100 - 46.7, ("batch",), size).code == NO_STOP
    assert stop.check(T0 + 100 - 46.6, ("batch",), size).code == DEADLINE
    assert stop.check(T0 + 100 - 19.8, ("batch",), size).code == DEADLINE
    assert stop.check(T0 + 100 - 56.7, ("batch", "epoch"), size).code == NO_STOP
    verdict = stop.check(T0 + 100 - 56.6, ("batch", "epoch"), size)
    assert verdict.code == DEADLINE and verdict.step_s == 50.0


def test_a_segments_first_step_is_judged_by_the_typical_step() -> None:
    """One step 10x slower than the rest among few measurements: the later steps of a segment are
    predicted conservatively, its first by the median, so a slot that holds the usual step
    always makes progress (SlotTooShortError then means the typical step does not fit)."""
    stop, _ = _decision(T0 + 100)
    for seconds in (6.0, 60.0):
        stop.measured("batch", seconds, first=False)
    stop.saved(1.0, 1000)
    size = lambda: 1000  # noqa: E731
    left = T0 + 100 - 45.0  # 45 s: the 33 s median fits with the save and margin, 60 s does not
    assert stop.check(left, ("batch",), size).code == DEADLINE
    assert stop.check(left, ("batch",), size, first=True).code == NO_STOP


def test_no_deadline_never_stops_and_a_signal_always_does() -> None:
    stop, _ = _decision(None)
    assert stop.check(T0, ("batch",), lambda: 0).code == NO_STOP
    stop.signals.received = "SIGUSR1"
    assert stop.check(T0, ("batch",), lambda: 0).code == SIGNAL


def test_the_history_carries_measurements_but_not_warm_up_steps() -> None:
    stop, _ = _decision(T0 + 100)
    stop.measured("batch", 30.0, first=True)
    stop.measured("batch", 1.0, first=False)
    stop.saved(0.5, 10)
    nxt, _ = _decision(T0 + 100)
    nxt.restore(stop.history(), [(0.7, 10)])
    assert nxt.batch_time.history() == [1.0] and nxt.save_time.history() == [(0.5, 10), (0.7, 10)]


def test_slurms_own_warning_moves_the_deadline_instead_of_stopping() -> None:
    end = datetime.fromtimestamp(T0 + 80, tz=timezone.utc)
    env = {"SLURM_JOB_ID": "1", "BATCHER_SLURM_SIGNAL": "URG@60"}
    warning = SlurmWarning.from_env(env, run=lambda argv, timeout_s: end.isoformat())
    stop, said = _decision(None, warning=warning)
    stop.signals.received = "SIGURG"
    verdict = stop.check(T0, ("batch",), lambda: 0)  # 80 s before the end: inside lead + 35 s
    assert verdict.code != SIGNAL and stop.deadline.at == T0 + 80
    assert stop.deadline.source == "Slurm end time (re-read)" and "Slurm's warning" in said[0]
