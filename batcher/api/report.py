"""What a segment tells: its log lines (start, progress, stop, done) and its status file.

Rank 0 speaks for the run; every rank's lines carry its rank under torch.distributed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from batcher.api.counting import LoopCount
from batcher.api.settings import Settings
from batcher.ckpt.store import CheckpointInfo
from batcher.ckpt.training_state import Position
from batcher.errors import SlotTooShortError
from batcher.limits.timespec import format_duration
from batcher.run.status import CheckpointRef, SegmentSeconds, SegmentStatus, write_status
from batcher.stopping.decision import DeadlineSeconds

__all__ = ["Report", "SegmentEnd"]


@dataclass(frozen=True)
class SegmentEnd:
    """What the loop knows at a segment's end, for its status file: how it ended (``done``,
    ``reason``), where (``pos``, from ``start_step``, of ``total`` epochs of ``epoch_len``
    batches), when (unix s: ``started``, ``ended``; seconds loading and saving), the deadline,
    the median step, the last checkpoint and the ``timeline`` (see :class:`SegmentStatus`) and
    the save stalls (see :class:`batcher.api.timeline.Timeline`)."""

    done: bool
    reason: str
    pos: Position
    start_step: int
    total: int | None
    epoch_len: int | None
    started: float
    ended: float
    load_s: float
    save_s: float
    deadline: DeadlineSeconds
    step_s_median: float | None
    checkpoint: CheckpointInfo | None
    timeline: dict[str, float]
    stalls_s: float = 0.0  # training held by saves before the segment began to stop
    world_size: int = 1  # ranks (the workflow compares segments run on different widths)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


class Report:
    """Messages to ``out`` and the status file of one segment."""

    def __init__(self, out: IO[str], settings: Settings, checkpoints: Path, *, rank: int | None) -> None:
        self._out, self._settings, self._checkpoints = out, settings, checkpoints
        self.experiment, self.index = settings.experiment, settings.segment
        self._rank = "" if rank is None else f" rank {rank}"
        self._main = rank is None or rank == 0
        self._last_progress: float | None = None

    def say(self, message: str) -> None:
        print(f"[batcher{self._rank}] {message}", file=self._out, flush=True)

    def opened(self, checkpoint: str | None, pos: Position, deadline: DeadlineSeconds, margin: str) -> None:
        """The segment's first line; ``margin`` says the margin in force and where it comes from."""
        where = "fresh start"
        if checkpoint is not None:
            where = f"resumed from checkpoint {checkpoint} (epoch {pos.epoch}, batch {pos.batch}, step {pos.step})"
        limit = "no deadline (runs to the end)"
        if deadline.at is not None:
            at = datetime.fromtimestamp(deadline.at, tz=timezone.utc).astimezone()
            left = format_duration(deadline.at - time.time())
            limit = f"deadline {at:%Y-%m-%d %H:%M:%S %Z} in {left} ({deadline.source})"
        self.say(f"{self.experiment} segment {self.index}: {where}; {limit}; {margin}")

    def progress(self, now: float, count: LoopCount, elapsed: float, deadline: float | None) -> None:
        """A progress line every ``progress_every_s`` (the first one that long after the first call)."""
        every = self._settings.progress_every_s
        if self._last_progress is None:
            self._last_progress = now - elapsed
        if not every or now - self._last_progress < every:
            return
        self._last_progress = now
        pos, epoch_len, rate = count.pos, count.epoch_len, count.steps_here / max(elapsed, 1e-9)
        where = f"epoch {pos.epoch}/{count.total}" + (f" batch {pos.batch}/{epoch_len}" if epoch_len else "")
        until = "" if deadline is None else f" | deadline in {format_duration(deadline - now)}"
        self.say(f"{where} | step {pos.step} | {rate:.3g} steps/s{until}")

    def stopped(
        self, reason: str, pos: Position, steps: int, left: float | None, step_s: float, save_s: float
    ) -> None:
        spare = "" if left is None else f", {left:.1f}s before the deadline"
        if reason == "deadline":
            spare += f" (predicted next step {step_s:.2f}s, save {save_s:.2f}s)"
        self.say(
            f"stopped: {reason} at epoch {pos.epoch} batch {pos.batch} (step {pos.step}, "
            f"+{steps} this segment){spare}; run again to continue"
        )

    def saved_in_background(self, info: CheckpointInfo, stall_s: float) -> None:
        if not self._main:
            return
        self.say(
            f"saved {info.file} (step {info.step}) in the background: training paused {stall_s:.2f}s, "
            f"written in {info.save_s:.2f}s"
        )

    def too_short(
        self, step_s: float, save_s: float, margin_s: float, left: float, source: str
    ) -> SlotTooShortError:
        if left < 0:
            return SlotTooShortError(
                f"{self.experiment} segment {self.index}: the deadline ({source}) passed "
                f"{format_duration(-left)} ago, before the first step; check that setting (a time "
                "in the past, in another time zone or year?), or remove it to run without one."
            )
        return SlotTooShortError(
            f"{self.experiment} segment {self.index}: no progress possible — the next step takes "
            f"~{step_s:.1f}s and a save ~{save_s:.1f}s, plus the {margin_s:.1f}s margin, but only "
            f"{left:.1f}s remain before the deadline ({source}). Give jobs more time "
            "(policy or time limit), lower margin_s, or make a step shorter (iterate over batches)."
        )

    def status(self, end: SegmentEnd) -> None:
        """Write the segment's status file (last: the workflow reads it to go on)."""
        done, reason, pos, start_step, total = end.done, end.reason, end.pos, end.start_step, end.total
        started, now, load_s, save_s = end.started, end.ended, end.load_s, end.save_s
        deadline, checkpoint = end.deadline, end.checkpoint
        part = pos.epoch + (pos.batch / end.epoch_len if end.epoch_len else 0)
        wall = now - started
        ref = None
        if checkpoint is not None:
            path = str(self._checkpoints / checkpoint.file)
            ref = CheckpointRef(path, checkpoint.digest, checkpoint.algorithm, checkpoint.size)
        status = SegmentStatus(
            status="done" if done else "unfinished",
            segment=self.index,
            experiment=self.experiment,
            stop_reason=reason,
            epoch=pos.epoch,
            batch=pos.batch,
            step=pos.step,
            steps_this_segment=pos.step - start_step,
            total=total,
            # an unfinished run is never complete: its last epoch's end and seg.done() are ahead
            progress=1.0 if done else (min(part / total, 0.999) if total else None),
            started=_iso(started),
            ended=_iso(now),
            deadline=_iso(deadline.at),
            deadline_source=deadline.source,
            seconds=SegmentSeconds(
                wall, load_s, save_s, max(0.0, wall - load_s - save_s), min(end.stalls_s, save_s)
            ),
            step_s_median=end.step_s_median,
            checkpoint=ref,
            run_dir=str(self._settings.run.root),
            timeline={**end.timeline, "status": now},
            attempt=self._settings.attempt,
            world_size=end.world_size,
        )
        write_status(self._settings.status_file, status)
