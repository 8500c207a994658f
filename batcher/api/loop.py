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

import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, NoReturn, TypeVar

from batcher.api.carried import Carried
from batcher.api.counting import LoopCount
from batcher.api.devices import gpu_warnings
from batcher.api.elastic import begin_pass
from batcher.api.objects import TrainingObjects
from batcher.api.replay import EpochReplay, resume_notice
from batcher.api.report import Report, SegmentEnd
from batcher.api.saves import SegmentSaves
from batcher.api.script_end import at_script_end, exit_stopped, finish_forgotten
from batcher.api.settings import Settings
from batcher.api.timeline import Timeline
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.store import CheckpointStore
from batcher.ckpt.training_state import Position
from batcher.errors import BatcherError, NotFinishedError
from batcher.run.lock import RunLock
from batcher.run.metrics import MetricLog
from batcher.stopping.decision import DEADLINE, FAILED, SAVE, DeadlineSeconds, StopDecision

__all__ = ["Segment"]

T = TypeVar("T")


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
        self._saves = SegmentSaves(
            store, self._ranks, self._objects, self._metrics, settings.save_every, clock=clock,
            on_saved=lambda info: stop.saved(info.save_s, info.size), on_background=self._report.saved_in_background,
        )  # fmt: skip
        self._lock = RunLock(settings.run.lock)
        self._count, self._replay = LoopCount(), EpochReplay()
        self._carried = Carried(
            self._objects, self._ranks, stop, self._count, self._replay, segment=self.index
        )
        self._started = self._last_boundary = clock()
        self._t_load, self._phase, self._closed = 0.0, Phase.TRAINING, False
        self._timeline = Timeline.of(settings, beating=self._ranks.main, say=self._report.say)
        self.resumed = False  # this segment continued from a checkpoint

    @property
    def _pos(self) -> Position:
        return self._count.pos

    @property
    def deadline(self) -> DeadlineSeconds:
        return self._stop_decision.deadline

    # -- life cycle ------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._ranks.main:
            self._lock.acquire()
        self._signals.install()
        t0 = self._clock()
        loaded = self._carried.load(self._store, say=self._report.say)
        if loaded:
            self.resumed = True
            self._saves.resumed(loaded.info, self._pos.tick)
        seq = self._carried.metrics_seq if loaded else 0
        if self._ranks.main:
            self._metrics.resume(seq)
        self._metrics.seq = seq
        self._t_load = self._clock() - t0
        self._last_boundary = self._clock()
        self._saves.restart(self._last_boundary, self._pos.step, self._pos.tick)
        self._timeline.mark(segment=self._started, training=self._last_boundary)
        for warning in [*self.deadline.warnings, *(gpu_warnings() if self._ranks.main else [])]:
            self._report.say(f"WARNING: {warning}")
        margin = self._stop_decision.margin.describe()
        self._report.opened(loaded.info.file if loaded else None, self._pos, self.deadline, margin)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._saves.close()
        self._metrics.close()
        self._signals.restore()
        self._store.wait_for_cleanup()  # old checkpoints go before another process may take the run
        self._lock.release()
        self._ranks.settle()

    def _at_exit(self) -> None:
        """At interpreter exit: finish a run whose loop ran out without ``seg.done()`` (see
        :func:`batcher.api.script_end.finish_forgotten`)."""
        if not self._closed and self._phase is Phase.LOOP_ENDED:
            finish_forgotten(self.done, say=self._report.say, can_save=not self._ranks.active)

    # -- the loops -------------------------------------------------------------------------------
    def range(self, stop: int) -> Iterator[int]:
        """Yield epoch numbers from where the run stopped up to ``stop`` (exclusive).

        The first call restores the RNG states; each epoch end is a place to stop and save.
        """
        if not isinstance(stop, int) or stop < 0:
            raise BatcherError(f"seg.range(stop): stop must be a non-negative int, got {stop!r}")
        self._count.total = stop
        self._carried.put_back_rng()
        self._check(next_kinds=self._count.epoch_start_kinds(), first=True)
        while self._pos.epoch < stop:
            yield self._pos.epoch
            self._replay.end_epoch()
            if self._count.epoch_ended():
                self._boundary("epoch", next_kinds=self._count.epoch_start_kinds())
        if self._phase is Phase.TRAINING:
            at_script_end(self._at_exit)
            self._phase = Phase.LOOP_ENDED

    def iterate(self, loader: Iterable[T]) -> Iterator[T]:
        """Yield the batches of ``loader`` for this epoch, skipping those done before a mid-epoch stop.

        A plain ``DataLoader`` is replayed from its epoch's RNG state (an ``ElasticSampler`` starts
        after the samples done, on any world size); one passed to :func:`segment` resumes itself.
        """
        own = self._objects.is_loader_given(loader)  # it resumes by itself
        plan, t0 = begin_pass(loader, self._pos, self._ranks.world), time.perf_counter()
        self._count.batches_begin(plan.length, plan.per_step)
        batches = self._replay.batches(loader, plan.skip, self_resuming=own, mid_epoch=plan.mid_epoch)
        notice = resume_notice(loader, plan.skip, time.perf_counter() - t0, self_resuming=own)
        if notice and self._ranks.main:
            self._report.say(f"NOTE: {notice}")
        for item in batches:
            yield item
            next_kinds, hold = self._count.batch_ended()
            self._boundary("batch", next_kinds=next_kinds, hold=hold)

    # -- boundaries: measure, decide, stop -------------------------------------------------------
    def _boundary(self, kind: str, *, next_kinds: tuple[str, ...], hold: bool = False) -> None:
        now = self._clock()
        # this segment's first step (compile, workers, caches) is kept apart
        self._stop_decision.measured(kind, now - self._last_boundary, first=self._count.first_step)
        self._last_boundary = now
        self._pos.tick += 1
        if not hold:  # the same on every rank: the ranks' epochs are equally long
            self._check(next_kinds=next_kinds, now=now)

    def _check(self, *, next_kinds: tuple[str, ...], now: float | None = None, first: bool = False) -> None:
        now = self._clock() if now is None else now
        verdict = self._stop_decision.check(now, next_kinds, self._saves.size, first=first)
        background = self._saves.due(now, self._pos.step, end=self.deadline.at)
        agreed = self._ranks.agree_stop(max(verdict.code, background))
        if agreed == FAILED:
            self._saves.wait()  # raises the background save's SaveError on every rank
        if agreed >= DEADLINE:
            reason = verdict.reason
            if verdict.code < DEADLINE or agreed > verdict.code:
                reason = "deadline" if agreed == DEADLINE else "signal on another rank"
            self._stop(reason, step_s=verdict.step_s, save_s=verdict.save_s, now=now)
        if agreed == SAVE:
            self._save(now=now, background=True)
        self._report.progress(now, self._count, now - self._started, self.deadline.at)
        self._timeline.beat(now, self._pos.step, self._saves)

    def _stop(self, reason: str, *, step_s: float = 0.0, save_s: float = 0.0, now: float = 0.0) -> NoReturn:
        if reason == "deadline" and self._count.first_step:  # the same on every rank
            self._close()
            left = (self.deadline.at or now) - now
            raise self._report.too_short(
                step_s, save_s, self._stop_decision.margin_s, left, self.deadline.source
            )
        self._final_save()
        self._write_status("unfinished", reason)
        spare = None if self.deadline.at is None else self.deadline.at - self._clock()
        self._report.stopped(reason, self._pos, self._count.steps_here, spare, step_s, save_s)
        self._close()
        self._ranks.finish()
        exit_stopped(reason)

    # -- saving ----------------------------------------------------------------------------------
    def _save(self, *, now: float = 0.0, background: bool = False) -> None:
        """Save now, in the background or until the checkpoint is committed (a stop, the run's end)."""
        pos = self._pos
        done = self._phase is not Phase.TRAINING

        def state() -> dict[str, Any]:
            return self._carried.capture(metrics_seq=self._metrics.seq, done=done).encode()

        self._saves.save(
            state, step=pos.step, segment=self.index, tick=pos.tick, now=now, background=background
        )
        if not background:
            self._timeline.mark(saved=self._clock())

    def _final_save(self, *, force: bool = False) -> None:
        """The stop's or the run's save, where the timeline's "stopping" begins: what was trained
        since the last save (all when ``force``), else wait for the background save in flight."""
        self._timeline.stopping(self._clock(), self._saves.held_s)
        if force or self._saves.dirty(self._pos.tick):
            self._save()
        else:
            self._saves.wait()

    def _write_status(self, state: str, reason: str) -> None:
        if self._ranks.main:
            self._report.status(
                SegmentEnd(
                    state == "done", reason, self._pos, self._count.start_step, self._count.total,
                    self._count.epoch_len, self._started, self._clock(), self._t_load, self._saves.held_s,
                    self.deadline, self._stop_decision.median_step(), self._saves.last, self._timeline.marks,
                    self._timeline.stalls_s, self._ranks.world,
                )
            )  # fmt: skip

    # -- user-facing extras ----------------------------------------------------------------------
    def log(self, **metrics: Any) -> None:
        """Record one row of metrics (with epoch, step and segment added); never duplicated on resume."""
        row = {"epoch": self._pos.epoch, "step": self._pos.step, "segment": self.index, "time": time.time()}
        self._metrics.log({**row, **metrics}, write=self._ranks.main)  # rank 0 keeps the log

    def done(self) -> None:
        """Mark the run finished: save the final state and report ``done``.

        Raises :class:`NotFinishedError` when called before ``seg.range(...)`` ran to its end.
        """
        if self._phase is Phase.TRAINING:
            raise NotFinishedError(
                f"seg.done() called {self._count.where()}; call it after the `for epoch in "
                "seg.range(n)` loop has run to its end"
            )
        self._phase = Phase.FINISHING
        self._final_save(force=not self._carried.done)
        self._carried.done = True
        self._write_status("done", "finished")
        self._report.say(
            f"done: {self.experiment} finished at epoch {self._pos.epoch} (step {self._pos.step})"
        )
        self._close()

    def save(self) -> None:
        """Save the training state where it is, in the background, while training goes on.

        Inside ``seg.range(...)`` the checkpoint is taken at the end of the current step (the
        next batch or epoch boundary): a checkpoint always holds a whole step, so that resuming
        from it repeats nothing and skips nothing. Call it right after what the checkpoint must
        hold (e.g. a validation that found the best model so far). Outside the loop it saves at
        once. Under torch.distributed, every rank calls it.
        """
        if self._count.total is not None and self._phase is Phase.TRAINING:
            self._saves.request()
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
