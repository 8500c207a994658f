"""A segment's saves: at once (a stop, the run's end) or in the background (periodic, ``seg.save()``).

:class:`SegmentSaves` puts together the collective save (:mod:`batcher.ckpt.saving`), the save
schedule (:mod:`batcher.ckpt.schedule`) and what the segment's stop needs to know of them: the
next checkpoint's size, every committed save's time, whether steps were taken since the last
save. It knows nothing of the loops: the segment hands it the state to save and the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batcher.api.objects import TrainingObjects
from batcher.ckpt.manifest import CheckpointInfo
from batcher.ckpt.periodic import SaveEvery
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.saving import CollectiveSave
from batcher.ckpt.schedule import SaveSchedule
from batcher.ckpt.store import CheckpointStore
from batcher.run.metrics import MetricLog

__all__ = ["Committed", "SegmentSaves"]


@dataclass(frozen=True)
class Committed:
    """A committed checkpoint, for the heartbeat: its ``step``, when its state was taken
    (``at``, the segment's clock) and the seconds training had been held by saves then."""

    step: int = 0
    at: float = 0.0
    held_s: float = 0.0


class SegmentSaves:
    """The saves of one segment. ``on_saved(info)`` hears of every committed save;
    ``on_background(info, stall_s)`` of every background one, once."""

    def __init__(
        self,
        store: CheckpointStore,
        ranks: Ranks,
        objects: TrainingObjects,
        metrics: MetricLog,
        every: SaveEvery,
        *,
        clock: Callable[[], float],
        on_saved: Callable[[CheckpointInfo], None],
        on_background: Callable[[CheckpointInfo, float], None],
    ) -> None:
        self._objects, self._clock = objects, clock
        self._saver = CollectiveSave(store, ranks, objects.sharded, metrics)
        self._schedule = SaveSchedule(every, self._saver, on_saved=self._saved_in_background)
        self._on_saved, self._on_background = on_saved, on_background
        self.last: CheckpointInfo | None = None  # the newest checkpoint: resumed from or saved
        self.held_s = 0.0  # training held for saves in this segment
        # the newest committed checkpoint: its step, when its state was taken, held_s then
        self.committed = Committed()
        self._pending = Committed()  # the background save in flight
        self._size: int | None = None
        self._saved_tick = 0

    def resumed(self, info: CheckpointInfo, tick: int) -> None:
        self.last, self._size, self._saved_tick = info, info.size, tick

    def restart(self, now: float, step: int, tick: int) -> None:
        """The segment trains from here: count the save interval from ``now``."""
        self._schedule.restart(now, step)
        self._saved_tick = tick
        self.committed = Committed(step, now, self.held_s)

    def dirty(self, tick: int) -> bool:
        """Steps were taken since the last save (``tick``: the loops' boundary count)."""
        return tick != self._saved_tick

    def size(self) -> int:
        """The next checkpoint's size, for the save-time prediction: the last one's, else a guess."""
        if self._size is None:
            self._size = self._objects.size_guess()
        return self._size

    def due(self, now: float, step: int, *, end: float | None) -> int:
        """The schedule's code at a boundary (SAVE, FAILED or NO_STOP; see :class:`SaveSchedule`)."""
        return self._schedule.code(now, step, end=end, state=self._objects.replicated_state)

    def request(self) -> None:
        self._schedule.request()

    def wait(self) -> None:
        """Wait for the background save in flight; raise its failure as SaveError."""
        self._schedule.wait()

    def save(
        self, state: Callable[[], dict[str, Any]], *, step: int, segment: int, tick: int, now: float,
        background: bool,
    ) -> None:  # fmt: skip
        """Save ``state()`` in the background (training waits only for the copy to host memory,
        and for the previous background save still being written), else until the checkpoint is
        committed."""
        self._schedule.wait()
        t0 = self._clock()
        encoded = state()
        if background:
            self._schedule.start(encoded, now=now, step=step, segment=segment)
        else:
            self._saved(self._saver.save(encoded, step=step, segment=segment))
        self.held_s += self._clock() - t0
        self._saved_tick = tick
        taken = Committed(step, t0, self.held_s)
        if background:
            self._pending = taken
        else:
            self.committed = taken

    def close(self) -> None:
        """A background write still running finishes first."""
        self._saver.abandon()

    def _saved(self, info: CheckpointInfo) -> None:
        self._size, self.last = info.size, info
        self._on_saved(info)

    def _saved_in_background(self, info: CheckpointInfo) -> None:
        self.committed = self._pending
        self._saved(info)
        self._on_background(info, self._saver.last_stall_s)
