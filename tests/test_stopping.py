"""The stop decision at a step boundary, with fixed instants: no process, no sleeping."""

from __future__ import annotations

import signal
from datetime import datetime, timezone

from batcher.deadline import Deadline
from batcher.signals import StopSignals
from batcher.slurm import SlurmWarning
from batcher.stopping import DEADLINE, NO_STOP, SIGNAL, DeadlineSeconds, StopDecision

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
