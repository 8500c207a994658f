"""When a segment stops: at each step boundary, the deadline against the predicted next step and
save, and the stop signals (telling Slurm's own early warning apart from a person's request).

It owns the estimators of step and save times, their history carried across segments in the
checkpoint, and each segment's first, warm-up step (compilation, loader workers), which is kept
out of that history. It decides; the segment loop agrees the verdict across ranks and acts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from batcher.stopping.deadline import Deadline
from batcher.stopping.margin import LearnedMargin
from batcher.stopping.signals import StopSignals
from batcher.stopping.slurm import SlurmWarning
from batcher.stopping.timing import DurationEstimator, SaveEstimator

__all__ = ["DEADLINE", "FAILED", "NO_STOP", "SAVE", "SIGNAL", "StopDecision", "Verdict"]

# a boundary's codes, ordered: the ranks agree on the highest one any of them saw. SAVE: a
# periodic or requested save, training goes on; FAILED: rank 0's background save failed
NO_STOP, SAVE, DEADLINE, SIGNAL, FAILED = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Verdict:
    """What one boundary's check found: ``code`` and why, with the predictions behind a deadline stop."""

    code: int
    reason: str = ""
    step_s: float = 0.0
    save_s: float = 0.0


class DeadlineSeconds:
    """A :class:`Deadline` with ``at`` as unix seconds, for cheap comparisons at every step; the
    Slurm end time re-read at its warning may move it earlier."""

    def __init__(self, deadline: Deadline) -> None:
        self.at: float | None = None if deadline.at is None else deadline.at.timestamp()
        self.source = deadline.source
        self.warnings = deadline.warnings


class StopDecision:
    """Decides at every step boundary whether the segment must stop now."""

    def __init__(
        self,
        deadline: DeadlineSeconds,
        *,
        margin_s: float | None,
        signals: StopSignals,
        slurm_warning: SlurmWarning | None,
        say: Callable[[str], None],
    ) -> None:
        self.deadline = deadline
        self.margin = LearnedMargin(fixed_s=margin_s)
        self.signals = signals
        self._slurm_warning = slurm_warning
        self._say = say
        self.batch_time = DurationEstimator()
        self.epoch_time = DurationEstimator()
        self.save_time = SaveEstimator()
        self._predicted: tuple[float, float] | None = None  # (at, seconds) of the step under way

    @property
    def margin_s(self) -> float:
        """Seconds kept free before the deadline now (fixed, or learned: :mod:`batcher.stopping.margin`)."""
        return self.margin.seconds

    # -- measurements ----------------------------------------------------------------------------
    def measured(self, kind: str, seconds: float, *, first: bool) -> None:
        """Record a step of ``kind`` (``batch`` or ``epoch``); ``first``: the segment's warm-up step."""
        estimator = self.batch_time if kind == "batch" else self.epoch_time
        (estimator.warm_up if first else estimator.add)(seconds)

    def saved(self, seconds: float, size: int) -> None:
        if len(self.save_time.history()):  # a prediction from measurements, not the first guess
            self.margin.save(self.save_time.predict(size), seconds)
        self.save_time.add(seconds, size)

    def history(self) -> dict[str, Any]:
        """The measurements a checkpoint carries to the next segment."""
        return {
            "batch": self.batch_time.history(),
            "epoch": self.epoch_time.history(),
            "saves": [list(x) for x in self.save_time.history()],
            "margin": self.margin.history(),
        }

    def restore(self, timing: dict[str, Any], saves: list[tuple[float, int]]) -> None:
        """Carry on from a checkpoint's ``history()``; ``saves``: the store's measured save times
        (a checkpoint cannot hold its own)."""
        self.batch_time = DurationEstimator(history=timing.get("batch", []))
        self.epoch_time = DurationEstimator(history=timing.get("epoch", []))
        self.save_time = SaveEstimator(history=[(float(s), int(n)) for s, n in timing.get("saves", [])])
        self.margin = LearnedMargin(fixed_s=self.margin.fixed_s, history=timing.get("margin"))
        for seconds, size in saves:
            self.save_time.add(seconds, size)

    def median_step(self) -> float | None:
        return self.batch_time.median() or self.epoch_time.median()

    # -- the decision ----------------------------------------------------------------------------
    def check(
        self, now: float, next_kinds: Sequence[str], state_size: Callable[[], int], *, first: bool = False
    ) -> Verdict:
        """This process's verdict at a boundary before ``next_kinds``: what runs before the next
        boundary where the loop may stop (a ``batch``; the last batch of an epoch and its
        ``epoch`` tail, between which no stop may fall).

        A signal stops at once, unless it is Slurm's warning for a known end (then the re-read
        end time becomes the deadline). Else the deadline stops when what runs next (each part a
        high quantile of its recent durations, see :class:`DurationEstimator`) plus the next save
        (measured, scaled by ``state_size()``) plus the margin would end after it: a step begins
        only when it and a save are predicted to end ``margin_s`` before the deadline. The
        segment's ``first`` step is judged by its typical (median) duration instead, so that one
        slow step measured before cannot stop every later segment from starting.
        """
        received = self.signals.received
        if received and self._slurm_warning is not None:
            warned, end = self._slurm_warning.is_warning(
                received, datetime.fromtimestamp(now, tz=timezone.utc)
            )
            if end is not None and (self.deadline.at is None or end.timestamp() < self.deadline.at):
                self.deadline.at, self.deadline.source = end.timestamp(), "Slurm end time (re-read)"
            if warned:
                self.signals.received = None
                self._say(
                    f"{received} is Slurm's warning before the end at {end:%H:%M:%S %Z}; the "
                    "deadline already accounts for it, training on"
                )
                received = None
        if self._predicted is not None:  # how long the step since the last check took, against its prediction
            at, predicted = self._predicted
            self.margin.step(predicted, now - at)
            self._predicted = None
        if received:
            return Verdict(SIGNAL, f"signal {received}")
        if self.deadline.at is None:
            return Verdict(NO_STOP)
        step = sum(self._predict(kind, typical=first) for kind in next_kinds)
        save = self.save_time.predict(state_size())
        if now + step + save + self.margin_s > self.deadline.at:
            late = now + save - self.deadline.at
            if late > 0 and not first:  # the step just taken began when it should not have
                self.margin.overran(late)
            return Verdict(DEADLINE, "deadline", step, save)
        if step > 0 and not first:  # the segment's first step (compile, workers) teaches nothing
            self._predicted = (now, step)
        return Verdict(NO_STOP, "", step, save)

    def _predict(self, kind: str, *, typical: bool) -> float:
        estimator = self.batch_time if kind == "batch" else self.epoch_time
        return (estimator.typical() if typical else estimator.predict()) or 0.0
