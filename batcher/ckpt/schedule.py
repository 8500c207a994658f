"""When a segment saves while training goes on: every ``save_every`` (:mod:`batcher.ckpt.periodic`),
or at the end of the step in which ``seg.save()`` was called, one background save in flight at a time.

The segment loop asks :meth:`SaveSchedule.code` at each step boundary (the codes of
:mod:`batcher.stopping.decision`, agreed across ranks with the stop), then :meth:`SaveSchedule.start`
when the ranks agreed on a save. The saves themselves go through :class:`batcher.ckpt.saving.CollectiveSave`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batcher.ckpt.manifest import CheckpointInfo
from batcher.ckpt.periodic import SaveEvery
from batcher.ckpt.saving import CollectiveSave
from batcher.stopping.decision import FAILED, NO_STOP, SAVE

__all__ = ["SaveSchedule"]


class SaveSchedule:
    """The periodic and requested saves of one segment, and the background save in flight.

    ``on_saved(info)`` hears of every background save once it is committed (from :meth:`code`
    or :meth:`wait`, whichever sees it first).
    """

    def __init__(
        self, every: SaveEvery, saver: CollectiveSave, *, on_saved: Callable[[CheckpointInfo], None]
    ) -> None:
        self.every = every
        self._saver = saver
        self._on_saved = on_saved
        self._since, self._since_step = 0.0, 0
        self._requested = self._prepared = False
        self._reported: CheckpointInfo | None = None

    def restart(self, now: float, step: int) -> None:
        """Count the interval from ``now`` and ``step`` (the segment's start)."""
        self._since, self._since_step = now, step

    def request(self) -> None:
        """``seg.save()``: save at the end of the current step."""
        self._requested = True

    def code(self, now: float, step: int, *, end: float | None, state: Callable[[], dict[str, Any]]) -> int:
        """SAVE when a periodic or requested save is due, FAILED when the last background save
        failed (rank 0 knows), else NO_STOP. ``end``: the deadline (unix s); ``state()``: the
        replicated objects' state, to allocate the host buffers after the first step."""
        outcome = self._saver.poll()
        if isinstance(outcome, BaseException):
            return FAILED
        if outcome is not None:
            self._report(outcome)
        steps = step - self._since_step
        if steps and not self._prepared and self._possible(end):
            # after a step, so that the optimizer's state exists: its buffers are allocated too
            self._prepared = True
            self._saver.prepare(state())
        due = self.every.due(now=now, since=self._since, steps_since=steps)
        return SAVE if (due or self._requested) and steps > 0 else NO_STOP

    def _possible(self, end: float | None) -> bool:
        """False when no periodic save can come before the deadline (a 14-minute job with the
        30-minute default): then no host memory is set aside for one."""
        every = self.every
        if every.off:
            return False
        return every.seconds is None or end is None or self._since + every.seconds < end

    def start(self, state: dict[str, Any], *, now: float, step: int, segment: int) -> None:
        """Copy ``state`` to host memory and let a thread write it; call :meth:`wait` first."""
        self._saver.start(state, step=step, segment=segment)
        self._since, self._since_step = now, step
        self._requested = False

    def wait(self) -> None:
        """Wait for a background save in flight (every rank); raise its failure as SaveError."""
        info = self._saver.wait()
        if info is not None:
            self._report(info)

    def _report(self, info: CheckpointInfo) -> None:
        if info is not self._reported:
            self._reported = info
            self._on_saved(info)
