"""The segment loop: restore, train until the deadline is near, save, report, exit.

>>> seg = batcher.segment(model=model, optimizer=opt)           # doctest: +SKIP
>>> for epoch in seg.range(100):                                # doctest: +SKIP
...     for batch in seg.iterate(loader):
...         ...
...     seg.log(epoch=epoch, loss=loss.item())
>>> seg.done()                                                  # doctest: +SKIP

It only orchestrates; docs/architecture.md says which module owns each concern it calls on.
"""

from __future__ import annotations

import atexit
import enum
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, NoReturn, TypeVar

from batcher.api.devices import gpu_warnings
from batcher.api.objects import TrainingObjects
from batcher.api.replay import EpochReplay, loader_length, resume_notice
from batcher.api.report import Report, SegmentEnd
from batcher.api.script_end import at_script_end, finish_forgotten
from batcher.api.settings import Settings
from batcher.ckpt.captured import capture_rng, restore_rng
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.saving import CollectiveSave
from batcher.ckpt.schedule import SaveSchedule
from batcher.ckpt.store import CheckpointInfo, CheckpointStore
from batcher.ckpt.training_state import Position, TrainingState
from batcher.errors import BatcherError, NotFinishedError
from batcher.run.lock import RunLock
from batcher.run.metrics import MetricLog
from batcher.stopping.decision import DEADLINE, FAILED, SAVE, DeadlineSeconds, StopDecision

__all__ = ["Segment", "SegmentStopped"]

T = TypeVar("T")


class SegmentStopped(SystemExit):
    """Raised to end the process after a clean save: exit status 0 (130 after Ctrl-C, as shells
    expect), the run is unfinished."""


class Phase(enum.Enum):
    """Where a segment is in its life; it only moves down this list."""

    TRAINING = 1  # before and inside seg.range(...)
    LOOP_ENDED = 2  # seg.range(...) ran to its end: seg.done() (or the exit hook) comes next
    FINISHING = 3  # seg.done() was called (its save may have failed, e.g. on a full disk)


class Segment:
    """One time-boxed piece of a training run. Create it with :func:`batcher.segment`."""

    def __init__(
        self,
        objects: Mapping[str, Any],
        *,
        settings: Settings,
        values: Mapping[str, Any],
        stop: StopDecision,
        clock: Callable[[], float],
        out: IO[str],
        store: CheckpointStore,
    ) -> None:
        self.settings, self._objects = settings, TrainingObjects(objects, values)
        self.values = self._objects.values
        self.run_dir, self.experiment, self.index = settings.run.root, settings.experiment, settings.segment
        self._ranks = Ranks()
        self._stop_decision, self._signals = stop, stop.signals
        self._clock, self._store = clock, store
        self._report = Report(
            out, settings, store.directory, rank=self._ranks.rank if self._ranks.active else None
        )
        self._metrics = MetricLog(settings.run.metrics)
        self._saver = CollectiveSave(store, self._ranks, self._objects.sharded, self._metrics)
        self._schedule = SaveSchedule(settings.save_every, self._saver, on_saved=self._saved_in_background)
        self._lock = RunLock(settings.run.lock)
        self._pos, self._replay = Position(), EpochReplay()
        self._started = self._last_boundary = self._last_progress = clock()
        self._t_load = self._t_save = 0.0
        self._start_step = self._start_tick = self._metrics_seq = 0
        self._total: int | None = None
        self._epoch_len: int | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._phase, self._closed = Phase.TRAINING, False
        self._done = False  # the checkpoint resumed from holds a finished run
        self._dirty = False  # steps were taken since the last save
        self._uses_iterate = self._uses_iterate_this_epoch = False
        self._last_ckpt: CheckpointInfo | None = None
        self._state_size: int | None = None
        self._timeline: dict[str, float] = {}

    @property
    def deadline(self) -> DeadlineSeconds:
        return self._stop_decision.deadline

    # -- life cycle ------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._ranks.main:
            self._lock.acquire()
        self._signals.install()
        t0 = self._clock()
        scope = self._objects.sharded.files_read if self._objects.sharded is not None else None
        loaded = self._store.load_latest(apply=self._restore, scope=scope, agree=self._ranks.all_good)
        for problem in loaded.problems if loaded else []:
            self._say(f"WARNING: {problem}")
        seq = self._metrics_seq if loaded else 0
        if self._ranks.main:
            self._metrics.resume(seq)
        self._metrics.seq = seq
        self._t_load = self._clock() - t0
        self._last_boundary = self._last_progress = self._clock()
        self._schedule.restart(self._last_boundary, self._pos.step)
        self._timeline = {"segment": self._started, "training": self._last_boundary}
        for warning in [*self.deadline.warnings, *(gpu_warnings() if self._ranks.main else [])]:
            self._say(f"WARNING: {warning}")
        margin = self._stop_decision.margin.describe()
        self._report.opened(loaded.info.file if loaded else None, self._pos, self.deadline, margin)

    def _restore(self, state: dict[str, Any], info: CheckpointInfo) -> None:
        where = str(self._store.directory / info.file)
        saved = TrainingState.decode(state, where=where)
        self._objects.restore(saved, where=where)
        self._pos, rescaled = saved.position_on(self._ranks.world)
        if rescaled and self._ranks.main:
            self._say(f"WARNING: {rescaled}")
        self._start_step, self._start_tick = self._pos.step, self._pos.tick
        self._pending_rng, epoch_rng = saved.rng_of(self._ranks.rank)
        self._replay.resume_from(epoch_rng, loader_live=saved.loader_live)
        self._metrics_seq = saved.metrics_seq
        measured = [(e.save_s, e.size) for e in self._store.entries() if e.save_s]
        self._stop_decision.restore(saved.timing, measured)
        self._done = saved.done
        self._uses_iterate = len(self._stop_decision.batch_time) > 0
        self._last_ckpt, self._state_size = info, info.size

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._saver.abandon()  # a background write still running finishes first
        self._metrics.close()
        self._signals.restore()
        self._store.wait_for_cleanup()  # old checkpoints go before another process may take the run
        self._lock.release()
        self._ranks.settle()

    def _at_exit(self) -> None:
        """At interpreter exit: finish a run whose loop ran out without ``seg.done()`` (see
        :func:`batcher.api.script_end.finish_forgotten`)."""
        if not self._closed and self._phase is Phase.LOOP_ENDED:
            finish_forgotten(self.done, say=self._say, can_save=not self._ranks.active)

    # -- the loops -------------------------------------------------------------------------------
    def range(self, stop: int) -> Iterator[int]:
        """Yield epoch numbers from where the run stopped up to ``stop`` (exclusive).

        The first call restores the RNG states; each epoch end is a place to stop and save.
        """
        if not isinstance(stop, int) or stop < 0:
            raise BatcherError(f"seg.range(stop): stop must be a non-negative int, got {stop!r}")
        self._total = stop
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None
        self._check(next_kinds=("batch",) if self._uses_iterate else ("epoch",), first=True)
        while self._pos.epoch < stop:
            yield self._pos.epoch
            self._pos.epoch += 1
            self._pos.batch, self._epoch_len = 0, None
            self._replay.end_epoch()
            if not self._uses_iterate_this_epoch:
                self._pos.step += 1
            self._uses_iterate_this_epoch = False
            if self._pos.epoch < stop:
                self._boundary("epoch", next_kinds=("batch",) if self._uses_iterate else ("epoch",))
            else:  # the loop is over: done() saves next, no reason to stop here
                self._dirty = True
                self._pos.tick += 1
        if self._phase is Phase.TRAINING:
            at_script_end(self._at_exit)
            self._phase = Phase.LOOP_ENDED

    def iterate(self, loader: Iterable[T]) -> Iterator[T]:
        """Yield the batches of ``loader`` for this epoch, skipping those done before a mid-epoch stop.

        A plain ``DataLoader`` is replayed from the RNG state captured when its epoch began; a
        loader with ``state_dict()`` passed to :func:`segment` resumes by itself.
        """
        self._uses_iterate = self._uses_iterate_this_epoch = True
        self_resuming = self._objects.is_loader_given(loader)
        self._epoch_len = loader_length(loader)
        skip, t0 = self._pos.batch, time.perf_counter()
        batches = self._replay.batches(loader, skip, self_resuming=self_resuming)
        notice = resume_notice(loader, skip, time.perf_counter() - t0, self_resuming=self_resuming)
        if notice and self._ranks.main:
            self._say(f"NOTE: {notice}")
        for item in batches:
            yield item
            self._pos.batch += 1
            self._pos.step += 1
            left = None if self._epoch_len is None else self._epoch_len - self._pos.batch
            if left is not None and left <= 0:
                # the epoch's batches are done, its tail (the code after this loop) runs next:
                # no stop or save before it reaches seg.range's boundary, or a resume would run
                # that tail again with no batch (the tail's time was in the last prediction)
                self._boundary("batch", next_kinds=("epoch",), hold=True)
            else:
                self._boundary("batch", next_kinds=("batch", "epoch") if left == 1 else ("batch",))

    # -- boundaries: measure, decide, stop -------------------------------------------------------
    def _boundary(self, kind: str, *, next_kinds: tuple[str, ...], hold: bool = False) -> None:
        now = self._clock()
        # this segment's first step (compile, workers, caches) is kept apart
        self._stop_decision.measured(
            kind, now - self._last_boundary, first=self._pos.tick == self._start_tick
        )
        self._last_boundary = now
        self._pos.tick += 1
        self._dirty = True
        if not hold:  # the same on every rank: the ranks' epochs are equally long
            self._check(next_kinds=next_kinds, now=now)

    def _size(self) -> int:
        """The next checkpoint's size, for the save-time prediction: the last one's, else a guess."""
        if self._state_size is None:
            self._state_size = self._objects.size_guess()
        return self._state_size

    def _check(self, *, next_kinds: tuple[str, ...], now: float | None = None, first: bool = False) -> None:
        now = self._clock() if now is None else now
        verdict = self._stop_decision.check(now, next_kinds, self._size, first=first)
        background = self._schedule.code(
            now, self._pos.step, end=self.deadline.at, state=self._objects.replicated_state
        )
        agreed = self._ranks.agree_stop(max(verdict.code, background))
        if agreed == FAILED:
            self._schedule.wait()  # raises the background save's SaveError on every rank
        if agreed >= DEADLINE:
            reason = verdict.reason
            if verdict.code < DEADLINE or agreed > verdict.code:
                reason = "deadline" if agreed == DEADLINE else "signal on another rank"
            self._stop(reason, step_s=verdict.step_s, save_s=verdict.save_s, now=now)
        if agreed == SAVE:
            self._save(now=now, background=True)
        if self.settings.progress_every_s and now - self._last_progress >= self.settings.progress_every_s:
            self._last_progress = now
            rate = (self._pos.step - self._start_step) / max(now - self._started, 1e-9)
            left = None if self.deadline.at is None else self.deadline.at - now
            self._report.progress(self._pos, self._total, self._epoch_len, rate, left)

    def _stop(self, reason: str, *, step_s: float = 0.0, save_s: float = 0.0, now: float = 0.0) -> NoReturn:
        if reason == "deadline" and self._pos.tick == self._start_tick:  # the same on every rank
            self._close()
            left = (self.deadline.at or now) - now
            raise self._report.too_short(
                step_s, save_s, self._stop_decision.margin_s, left, self.deadline.source
            )
        self._save() if self._dirty else self._schedule.wait()
        self._write_status("unfinished", reason)
        spare = None if self.deadline.at is None else self.deadline.at - self._clock()
        self._report.stopped(reason, self._pos, self._pos.step - self._start_step, spare, step_s, save_s)
        self._close()
        self._ranks.finish()
        # The process ends next, everything durable. Left to itself the interpreter's last garbage
        # collections walk every object torch made: 1.0-1.7 s after import torch here, in every
        # segment. Objects frozen at exit (after the atexit handlers registered later) are skipped.
        atexit.register(gc.freeze)
        raise SegmentStopped(130 if reason == "signal SIGINT" else 0)

    # -- saving ----------------------------------------------------------------------------------
    def _training_state(self) -> TrainingState:
        return TrainingState(  # gathering the RNG states is a collective: every rank takes part
            objects=self._objects.replicated_state(),
            values=self._objects.saved_values(),
            pos=Position(**self._pos.as_dict()),
            rng_by_rank=self._ranks.gather(capture_rng()),
            epoch_rng_by_rank=self._ranks.gather(self._replay.epoch_rng if self._pos.batch else None),
            sharded=self._objects.sharded_names(),
            total=self._total,
            metrics_seq=self._metrics.seq,
            timing=self._stop_decision.history(),
            loader_live=self._replay.loader_live(mid_epoch=self._pos.batch > 0),
            segment=self.index,
            done=self._phase is not Phase.TRAINING,
        )

    def _save(self, *, now: float = 0.0, background: bool = False) -> None:
        """Save now: in the background (training waits only for the copy to host memory, and for
        the previous background save still being written), else until the checkpoint is
        committed (a stop, the end of the run)."""
        self._schedule.wait()
        t0 = self._clock()
        state = self._training_state().encode()
        if background:
            self._schedule.start(state, now=now, step=self._pos.step, segment=self.index)
        else:
            self._saved(self._saver.save(state, step=self._pos.step, segment=self.index))
            self._timeline["saved"] = self._clock()
        self._t_save += self._clock() - t0
        self._dirty = False

    def _saved(self, info: CheckpointInfo) -> None:
        self._stop_decision.saved(info.save_s, info.size)
        self._state_size, self._last_ckpt = info.size, info

    def _saved_in_background(self, info: CheckpointInfo) -> None:
        self._saved(info)
        if self._ranks.main:
            self._report.saved_in_background(info, self._saver.last_stall_s)

    def _write_status(self, state: str, reason: str) -> None:
        if self._ranks.main:
            self._report.status(
                SegmentEnd(
                    state == "done", reason, self._pos, self._start_step, self._total, self._epoch_len,
                    self._started, self._clock(), self._t_load, self._t_save, self.deadline,
                    self._stop_decision.median_step(), self._last_ckpt, self._timeline,
                )
            )  # fmt: skip

    # -- user-facing extras ----------------------------------------------------------------------
    def log(self, **metrics: Any) -> None:
        """Record one row of metrics (with epoch, step and segment added); never duplicated on resume."""
        if not self._ranks.main:  # rank 0 keeps the log; the others only count rows
            self._metrics.seq += 1
            return
        row = {"epoch": self._pos.epoch, "step": self._pos.step, "segment": self.index, "time": time.time()}
        self._metrics.log({**row, **metrics})

    def done(self) -> None:
        """Mark the run finished: save the final state and report ``done``.

        Raises :class:`NotFinishedError` when called before ``seg.range(...)`` ran to its end.
        """
        if self._phase is Phase.TRAINING:
            where = (
                "before seg.range(...) was used"
                if self._total is None
                else f"at epoch {self._pos.epoch}/{self._total}"
            )
            raise NotFinishedError(
                f"seg.done() called {where}; call it after the `for epoch in seg.range(n)` loop has run to its end"
            )
        self._phase = Phase.FINISHING
        self._save() if self._dirty or not self._done else self._schedule.wait()
        self._done = True
        self._write_status("done", "finished")
        self._say(f"done: {self.experiment} finished at epoch {self._pos.epoch} (step {self._pos.step})")
        self._close()

    def save(self) -> None:
        """Save the training state where it is, in the background, while training goes on.

        Inside ``seg.range(...)`` the checkpoint is taken at the end of the current step (the
        next batch or epoch boundary): a checkpoint always holds a whole step, so that resuming
        from it repeats nothing and skips nothing. Call it right after what the checkpoint must
        hold (e.g. a validation that found the best model so far). Outside the loop it saves at
        once. Under torch.distributed, every rank calls it.
        """
        if self._total is not None and self._phase is Phase.TRAINING:
            self._schedule.request()
        else:
            self._save()

    @property
    def epoch(self) -> int:
        """The current epoch number."""
        return self._pos.epoch

    @property
    def step(self) -> int:
        """Steps (batches, or epochs without ``iterate``) completed over the whole run."""
        return self._pos.step

    @property
    def resumed(self) -> bool:
        """True when this segment continued from a checkpoint."""
        return self._last_ckpt is not None

    def _say(self, message: str) -> None:
        self._report.say(message)
