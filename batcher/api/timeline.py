"""A segment's timeline: its marks (for the status file) and rank 0's heartbeat while it trains.

The marks, unix seconds: ``launched`` (the job's shell starts Python), ``segment``
(``batcher.segment()`` called), ``training`` (restored), ``stopping`` (the final save begins),
``saved`` (the last save's end); the status file adds ``status``. With the seconds training was
held by saves before ``stopping`` (the stalls), they split a segment's time into the categories
of the time account (:mod:`batcher.workflow.account`).

The heartbeat (the file: :mod:`batcher.run.heartbeat`) is written at the first boundary, then
when :data:`~batcher.run.heartbeat.HEARTBEAT_S` seconds have passed or a checkpoint was committed
since the last one. A failed write (a full disk) never stops the training: it is said once and
the heartbeat is given up for the segment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batcher.api.saves import Committed, SegmentSaves
from batcher.api.settings import Settings
from batcher.errors import BatcherError
from batcher.run.heartbeat import HEARTBEAT_S, Heartbeat, write_heartbeat

__all__ = ["Timeline"]


class Timeline:
    """The marks of one attempt at ``segment``; heartbeats to ``path`` when ``beating`` (rank 0)."""

    def __init__(
        self,
        path: Path,
        *,
        segment: int,
        attempt: str,
        launched: float | None,
        beating: bool,
        say: Callable[[str], None],
        every_s: float = HEARTBEAT_S,
    ) -> None:
        self._path, self._segment, self._attempt = path, segment, attempt
        self._beating, self._say, self._every_s = beating, say, every_s
        self.marks: dict[str, float] = {} if launched is None else {"launched": launched}
        self.stalls_s = 0.0  # training held by saves before the segment began to stop
        self._last: float | None = None
        self._first_step: int | None = None
        self._committed: Committed | None = None

    @classmethod
    def of(cls, settings: Settings, *, beating: bool, say: Callable[[str], None]) -> Timeline:
        """The timeline of the segment ``settings`` describe."""
        return cls(
            settings.heartbeat_file, segment=settings.segment, attempt=settings.attempt,
            launched=settings.launched, beating=beating, say=say,
        )  # fmt: skip

    def mark(self, **times: float) -> None:
        self.marks.update(times)

    def stopping(self, now: float, held_s: float) -> None:
        """The segment stops (or finishes) at ``now``: the saves so far held training ``held_s``."""
        self.marks["stopping"] = now
        self.stalls_s = held_s

    def beat(self, now: float, step: int, saves: SegmentSaves) -> None:
        """Write a heartbeat if one is due at ``now`` (``step``: steps done over the run)."""
        if not self._beating:
            return
        committed = saves.committed
        if self._last is not None and now - self._last < self._every_s and committed == self._committed:
            return
        self._last, self._committed = now, committed
        self._first_step = step if self._first_step is None else self._first_step
        beat = Heartbeat(
            segment=self._segment, attempt=self._attempt, time=now, step=step, first_step=self._first_step,
            committed_step=committed.step, committed_at=committed.at, held_s=saves.held_s,
            held_at_commit=committed.held_s, timeline=dict(self.marks),
        )  # fmt: skip
        try:
            write_heartbeat(self._path, beat)
        except (OSError, BatcherError) as exc:
            self._beating = False
            self._say(f"WARNING: heartbeat not written ({exc}); training goes on without it")
