"""The segment loop (``batcher.segment``): restore, train until the deadline is near, save, report, exit.

>>> seg = batcher.segment(model=model, optimizer=opt)           # doctest: +SKIP
>>> for epoch in seg.range(100):                                # doctest: +SKIP
...     for batch in seg.iterate(loader):
...         ...
...     seg.log(epoch=epoch, loss=loss.item())
>>> seg.done()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import torch

from batcher.command import check_command
from batcher.deadline import Deadline, process_start_time, resolve_deadline
from batcher.devices import gpu_warnings
from batcher.errors import (
    BatcherError,
    CheckpointMismatchError,
    NotFinishedError,
    SaveError,
    SlotTooShortError,
)
from batcher.files import remove_path
from batcher.lock import RunLock
from batcher.metrics import MetricLog
from batcher.policy import Policy
from batcher.ranks import DEADLINE, NO_STOP, SIGNAL, Ranks
from batcher.sharded import ShardedState
from batcher.signals import DEFAULT_STOP_SIGNALS, StopSignals, parse_signals
from batcher.slurm import SlurmWarning
from batcher.state import (
    capture_rng,
    check_stateful,
    load_objects,
    load_values,
    restore_rng,
    save_objects,
    save_values,
)
from batcher.status import read_status, write_status
from batcher.store import CheckpointInfo, CheckpointStore
from batcher.timespec import format_duration
from batcher.timing import DurationEstimator, SaveEstimator

__all__ = ["Segment", "SegmentStopped", "segment"]

T = TypeVar("T")
STATE_FORMAT = 2  # 2: seg.values saved as tensors and containers (1: a JSON string)
READS_FORMATS = (1, 2)


class SaveFailed:
    """Rank 0's save error, sent to the other ranks so that all of them stop with it."""

    def __init__(self, message: str) -> None:
        self.message = message


class SegmentStopped(SystemExit):
    """Raised to end the process after a clean save: exit status 0, the run is unfinished."""


def _env_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BatcherError(f"{key}={raw!r} is not a number; write e.g. {key}={default:g}") from None
    if value < 0:
        raise BatcherError(f"{key}={raw!r} must not be negative")
    return value


def _default_run_dir(env: Mapping[str, str]) -> Path:
    if env.get("BATCHER_RUN_DIR"):
        return Path(env["BATCHER_RUN_DIR"])
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "run"
    return Path("runs") / script


def _state_bytes(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, Mapping):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(v) for v in state)
    return 16


class Segment:
    """One time-boxed piece of a training run. Create it with :func:`segment`."""

    def __init__(
        self,
        objects: Mapping[str, Any],
        *,
        run_dir: Path,
        values: Mapping[str, Any],
        deadline: _DeadlineSeconds,
        margin_s: float,
        keep: int,
        signals: StopSignals,
        status_file: Path,
        index: int,
        experiment: str,
        clock: Callable[[], float],
        progress_every_s: float,
        out: IO[str],
        store: CheckpointStore,
        slurm_warning: SlurmWarning | None = None,
    ) -> None:
        self.run_dir = run_dir
        self._slurm_warning = slurm_warning
        self._ranks = Ranks()
        self.experiment = experiment
        self.index = index
        self.deadline = deadline
        self.margin_s = margin_s
        self.status_file = status_file
        self.values: dict[str, Any] = dict(values)
        self._objects = dict(objects)
        self._stateful = {k: v for k, v in self._objects.items() if hasattr(v, "state_dict")}
        # FSDP: the model and its optimizers are saved as shards by every rank, the rest by rank 0
        self._sharded = ShardedState.find(self._stateful) if self._ranks.active else None
        self._replicated = {
            k: v for k, v in self._stateful.items() if self._sharded is None or k not in self._sharded.names
        }
        self._signals = signals
        self._clock = clock
        self._out = out
        self._progress_every_s = progress_every_s
        self._store = store
        self._metrics = MetricLog(run_dir / "metrics.jsonl")
        self._lock = RunLock(run_dir / "lock")
        self._started = clock()
        self._t_load = 0.0
        self._t_save = 0.0
        self._epoch = 0
        self._batch = 0  # batches completed in the current epoch
        self._step = 0  # batches (or epochs, without iterate) completed over the whole run
        self._tick = 0  # every boundary passed (a step, or an epoch's end)
        self._start_step = 0
        self._start_tick = 0
        self._total: int | None = None
        self._epoch_len: int | None = None
        self._epoch_rng: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._resume_epoch_rng: dict[str, Any] | None = None
        self._finished_loop = False
        self._done = False
        self._closed = False
        self._last_ckpt: CheckpointInfo | None = None
        self._dirty = False
        self._batch_time = DurationEstimator()
        self._epoch_time = DurationEstimator()
        self._save_time = SaveEstimator()
        self._state_size: int | None = None
        self._last_boundary = self._started
        self._last_progress = self._started
        self._uses_iterate = False

    # -- life cycle ------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._ranks.main:
            self._lock.acquire()
        self._signals.install()
        t0 = self._clock()
        loaded = self._store.load_latest(apply=self._restore)
        if loaded is not None:
            for problem in loaded.problems:
                self._say(f"WARNING: {problem}")
        if self._ranks.main:
            self._metrics.resume(self._metrics_seq if loaded else 0)
        else:
            self._metrics.seq = self._metrics_seq if loaded else 0
        self._t_load = self._clock() - t0
        self._last_boundary = self._clock()
        self._last_progress = self._last_boundary
        for warning in [*self.deadline.warnings, *(gpu_warnings() if self._ranks.main else [])]:
            self._say(f"WARNING: {warning}")
        where = (
            f"resumed from checkpoint {loaded.info.file} (epoch {self._epoch}, batch {self._batch}, "
            f"step {self._step})"
            if loaded
            else "fresh start"
        )
        if self.deadline.at is None:
            limit = "no deadline (runs to the end)"
        else:
            left = self.deadline.at - time.time()
            at = datetime.fromtimestamp(self.deadline.at, tz=timezone.utc).astimezone()
            limit = f"deadline {at:%Y-%m-%d %H:%M:%S %Z} in {format_duration(left)} ({self.deadline.source})"
        self._say(f"{self.experiment} segment {self.index}: {where}; {limit}; margin {self.margin_s:g}s")

    def _at_exit(self) -> None:
        """At interpreter exit, a loop that ran to its end without ``seg.done()``: finish the run
        (single process), so that the workflow does not retrain the segment, and say so."""
        if self._closed or not self._finished_loop:
            return  # stopped, finished, or left the loop early (a crash): nothing to add
        forgot = "the training loop ran to its end, but the script never called seg.done()"
        if getattr(sys, "last_value", None) is not None or self._ranks.active:
            # a script that crashed after its loop, or ranks whose process group may be gone:
            # no save here; the segment counts as failed and is retried from the last checkpoint
            self._say(f"ERROR: {forgot}; the run is not marked finished. Add seg.done() after the loop")
            return
        self._say(
            f"WARNING: {forgot}; batcher saves the final state and marks the run done. "
            "Add seg.done() after the loop"
        )
        try:
            self.done()
        except Exception as exc:  # an exception here would disturb the interpreter's shutdown
            self._say(f"ERROR: could not finish the run: {type(exc).__name__}: {exc}")

    def _restore(self, state: dict[str, Any], info: CheckpointInfo) -> None:
        if state.get("format") not in READS_FORMATS:
            raise BatcherError(
                f"{self._store.directory / info.file} has state format {state.get('format')!r}, this "
                f"torch-batcher reads format {STATE_FORMAT}; use the torch-batcher version that wrote it"
            )
        where = str(self._store.directory / info.file)
        sharded_dir = state.get("sharded_dir")
        if (sharded_dir is None) != (self._sharded is None):
            raise CheckpointMismatchError(
                f"checkpoint {where} was written "
                + ("with sharded (FSDP) state" if sharded_dir else "without FSDP")
                + " but this script "
                + ("has no FSDP model under torch.distributed" if sharded_dir else "passes an FSDP model")
                + "; resume a run the way it was started, or start a new run folder"
            )
        load_objects(self._replicated, state["objects"], where=where)
        if self._sharded is not None and sharded_dir is not None:
            self._sharded.load(Path(sharded_dir))
        self.values.update(load_values(state["values"], self.values))
        pos = state["pos"]
        self._epoch, self._batch, self._step, self._tick = (
            pos["epoch"],
            pos["batch"],
            pos["step"],
            pos["tick"],
        )
        self._start_step = self._step
        self._start_tick = self._tick
        by_rank = state.get("rng_by_rank") or [state["rng"]]
        epoch_by_rank = state.get("epoch_rng_by_rank") or [state.get("epoch_rng")]
        self._pending_rng = by_rank[self._ranks.rank % len(by_rank)]
        self._resume_epoch_rng = epoch_by_rank[self._ranks.rank % len(epoch_by_rank)]
        if len(by_rank) != self._ranks.world and self._ranks.main:
            self._say(
                f"WARNING: this checkpoint was saved by {len(by_rank)} process(es) and resumes on "
                f"{self._ranks.world}: training continues, but the data order from here on (and a "
                "sampler's split of the current epoch) differs from a run on one rank count"
            )
        self._metrics_seq = int(state["metrics_seq"])
        timing = state.get("timing", {})
        self._batch_time = DurationEstimator(history=timing.get("batch", []))
        self._epoch_time = DurationEstimator(history=timing.get("epoch", []))
        self._save_time = SaveEstimator(history=[tuple(x) for x in timing.get("saves", [])])
        for entry in self._store.entries():  # a checkpoint cannot hold its own save time
            if entry.save_s:
                self._save_time.add(entry.save_s, entry.size)
        self._done = bool(state.get("done"))
        self._uses_iterate = len(self._batch_time) > 0
        self._last_ckpt = info

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._metrics.close()
        self._signals.restore()
        self._store.wait_for_cleanup()  # old checkpoints go before another process may take the run
        self._lock.release()
        self._ranks.settle()

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
        self._check(next_kind="epoch" if not self._uses_iterate else "batch")
        while self._epoch < stop:
            yield self._epoch
            self._epoch += 1
            self._batch = 0
            self._epoch_len = None
            self._epoch_rng = None
            self._resume_epoch_rng = None
            if not self._uses_iterate_this_epoch:
                self._step += 1
            self._uses_iterate_this_epoch = False
            if self._epoch < stop:
                self._boundary(self._epoch_time, next_kind="batch" if self._uses_iterate else "epoch")
            else:  # the loop is over: done() saves next, no reason to stop here
                self._dirty = True
                self._tick += 1
        if not self._finished_loop:
            _at_script_end(self)
        self._finished_loop = True

    _uses_iterate_this_epoch = False
    _metrics_seq = 0

    def iterate(self, loader: Iterable[T]) -> Iterator[T]:
        """Yield the batches of ``loader`` for this epoch, skipping those done before a mid-epoch stop.

        A plain ``DataLoader`` is replayed from the RNG state captured when its epoch began; a
        loader with ``state_dict()`` passed to :func:`segment` resumes by itself.
        """
        self._uses_iterate = True
        self._uses_iterate_this_epoch = True
        skip = self._batch
        self_resuming = any(loader is obj for obj in self._stateful.values())
        if not self_resuming:
            if skip and self._resume_epoch_rng is not None:
                current = capture_rng()
                restore_rng(self._resume_epoch_rng)
                self._epoch_rng = self._resume_epoch_rng
            else:
                self._epoch_rng = capture_rng()
                current = None
        self._resume_epoch_rng = None
        try:
            self._epoch_len = len(loader)  # type: ignore[arg-type]
        except TypeError:
            self._epoch_len = None
        it = iter(loader)
        if skip and not self_resuming:
            _fast_forward(loader, it, skip)
            if current is not None:
                restore_rng(current)
        for item in it:
            yield item
            self._batch += 1
            self._step += 1
            last = self._epoch_len is not None and self._batch >= self._epoch_len
            self._boundary(self._batch_time, next_kind="epoch" if last else "batch")

    # -- boundaries: measure, decide, stop -------------------------------------------------------
    def _boundary(self, estimator: DurationEstimator, *, next_kind: str) -> None:
        now = self._clock()
        if self._tick == self._start_tick:  # this segment's first step: compile, workers, caches
            estimator.warm_up(now - self._last_boundary)
        else:
            estimator.add(now - self._last_boundary)
        self._last_boundary = now
        self._tick += 1
        self._dirty = True
        self._check(next_kind=next_kind, now=now)

    def _check(self, *, next_kind: str, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        code, reason, step, save = NO_STOP, "", 0.0, 0.0
        if self._signals.received:
            received: str | None = self._signals.received
            if self._slurm_warning is not None:
                warned, end = self._slurm_warning.is_warning(
                    self._signals.received, datetime.fromtimestamp(now, tz=timezone.utc)
                )
                if end is not None and (self.deadline.at is None or end.timestamp() < self.deadline.at):
                    self.deadline.at, self.deadline.source = end.timestamp(), "Slurm end time (re-read)"
                if warned:
                    self._signals.received = None
                    self._say(
                        f"{received} is Slurm's warning before the end at {end:%H:%M:%S %Z}; the "
                        "deadline already accounts for it, training on"
                    )
                    received = None
            if received:
                code, reason = SIGNAL, f"signal {received}"
        if code == NO_STOP and self.deadline.at is not None:
            step = (self._batch_time if next_kind == "batch" else self._epoch_time).predict() or 0.0
            if self._state_size is None:
                self._state_size = _state_bytes(save_objects(self._stateful))
            save = self._save_time.predict(self._state_size)
            if now + step + save + self.margin_s > self.deadline.at:
                code, reason = DEADLINE, "deadline"
        agreed = self._ranks.agree_stop(code)
        if agreed != NO_STOP:
            if code == NO_STOP or agreed > code:
                reason = "deadline" if agreed == DEADLINE else "signal on another rank"
            self._stop(reason, step_s=step, save_s=save, now=now)
        if self._progress_every_s and now - self._last_progress >= self._progress_every_s:
            self._last_progress = now
            self._progress(now)

    def _progress(self, now: float) -> None:
        done = self._step - self._start_step
        rate = done / max(now - self._started, 1e-9)
        left = "" if self.deadline.at is None else f" | deadline in {format_duration(self.deadline.at - now)}"
        where = f"epoch {self._epoch}/{self._total}"
        if self._epoch_len:
            where += f" batch {self._batch}/{self._epoch_len}"
        self._say(f"{where} | step {self._step} | {rate:.3g} steps/s{left}")

    def _stop(self, reason: str, *, step_s: float = 0.0, save_s: float = 0.0, now: float = 0.0) -> NoReturn:
        if reason == "deadline" and not self._dirty:  # the same on every rank: all raise
            left = (self.deadline.at or now) - now
            self._close()
            raise SlotTooShortError(
                f"{self.experiment} segment {self.index}: no progress possible — the next step takes "
                f"~{step_s:.1f}s and a save ~{save_s:.1f}s, plus the {self.margin_s:g}s margin, but only "
                f"{left:.1f}s remain before the deadline ({self.deadline.source}). Give jobs more time "
                "(policy or time limit), lower margin_s, or make a step shorter (iterate over batches)."
            )
        if self._dirty:
            self._save()
        self._write_status("unfinished", reason)
        spare = ""
        if self.deadline.at is not None:
            spare = f", {self.deadline.at - self._clock():.1f}s before the deadline"
        if reason == "deadline":
            spare += f" (predicted next step {step_s:.2f}s, save {save_s:.2f}s)"
        self._say(
            f"stopped: {reason} at epoch {self._epoch} batch {self._batch} (step {self._step}, "
            f"+{self._step - self._start_step} this segment){spare}; run again to continue"
        )
        self._close()
        self._ranks.finish()
        raise SegmentStopped(0)

    # -- saving ----------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        values = save_values(self.values)
        rng = self._ranks.gather(capture_rng())
        epoch_rng = self._ranks.gather(self._epoch_rng if self._batch else None)
        return {
            "format": STATE_FORMAT,
            "objects": save_objects(self._replicated),
            "sharded": sorted(self._sharded.names) if self._sharded else [],
            "values": values,
            "rng": rng[0],
            "epoch_rng": epoch_rng[0],
            "rng_by_rank": rng,
            "epoch_rng_by_rank": epoch_rng,
            "pos": {"epoch": self._epoch, "batch": self._batch, "step": self._step, "tick": self._tick},
            "total": self._total,
            "metrics_seq": self._metrics.seq,
            "timing": {
                "batch": self._batch_time.history(),
                "epoch": self._epoch_time.history(),
                "saves": [list(x) for x in self._save_time.history()],
            },
            "segment": self.index,
            "done": self._finished_loop,
        }

    def _save(self) -> CheckpointInfo:
        t0 = self._clock()
        state = self._state()  # a collective under torch.distributed: every rank takes part
        info: CheckpointInfo | SaveFailed | None = None
        if self._sharded is not None:
            info = self._save_sharded(state)
        elif self._ranks.main:
            try:
                self._metrics.sync()
                info = self._store.save(state, step=self._step, segment=self.index)
            except BatcherError as exc:
                info = SaveFailed(str(exc))
                if not self._ranks.active:
                    raise
        info = self._ranks.from_main(info if self._ranks.main else None)
        if isinstance(info, SaveFailed):
            raise SaveError(
                f"rank 0 could not save: {info.message}" if not self._ranks.main else info.message
            )
        assert info is not None
        self._t_save += self._clock() - t0
        self._save_time.add(info.save_s, info.size)
        self._state_size = info.size
        self._last_ckpt = info
        self._dirty = False
        return info

    def _save_sharded(self, state: dict[str, Any]) -> CheckpointInfo | SaveFailed | None:
        """Every rank writes its shards into rank 0's temporary folder; rank 0 commits it.

        Returns rank 0's result (None on the other ranks; the caller broadcasts it).
        """
        assert self._sharded is not None
        tmp: Path | SaveFailed | None = None
        if self._ranks.main:
            try:
                self._metrics.sync()
                tmp = self._store.prepare_sharded(self._step)
            except BatcherError as exc:
                tmp = SaveFailed(str(exc))
        tmp = self._ranks.from_main(tmp)
        if isinstance(tmp, SaveFailed):
            return tmp
        assert tmp is not None
        problem = ""
        try:
            self._sharded.save(tmp)
        except Exception as exc:  # DCP raises on every rank when any rank failed to write
            problem = f"writing the shards to {tmp} failed ({type(exc).__name__}: {exc})"
        if self._ranks.agree_stop(1 if problem else 0):  # anyone failed: nobody commits
            if self._ranks.main:
                remove_path(tmp)
                return SaveFailed(
                    (problem or "another rank could not write its shards")
                    + f"; check free space and permissions of {self._store.directory}. "
                    + self._store.keep_note(self._step)
                )
            return None
        if not self._ranks.main:
            return None
        try:
            return self._store.commit_sharded(state, step=self._step, segment=self.index)
        except BatcherError as exc:
            return SaveFailed(str(exc))

    def _progress_fraction(self, *, done: bool) -> float | None:
        """How much of ``seg.range(total)`` is behind: 1.0 only for a finished run (a segment
        stopped after the last batch still has the epoch's end and ``seg.done()`` ahead)."""
        if done:
            return 1.0
        if not self._total:
            return None
        part = self._epoch + (self._batch / self._epoch_len if self._epoch_len else 0)
        return min(part / self._total, 0.999)

    def _write_status(self, state: str, reason: str) -> None:
        if not self._ranks.main:
            return
        now = self._clock()
        ckpt = self._last_ckpt
        write_status(
            self.status_file,
            {
                "experiment": self.experiment,
                "segment": self.index,
                "status": state,
                "stop_reason": reason,
                "epoch": self._epoch,
                "batch": self._batch,
                "step": self._step,
                "steps_this_segment": self._step - self._start_step,
                "total": self._total,
                "progress": self._progress_fraction(done=state == "done"),
                "started": datetime.fromtimestamp(self._started, tz=timezone.utc).isoformat(),
                "ended": datetime.fromtimestamp(now, tz=timezone.utc).isoformat(),
                "deadline": None
                if self.deadline.at is None
                else datetime.fromtimestamp(self.deadline.at, tz=timezone.utc).isoformat(),
                "deadline_source": self.deadline.source,
                "seconds": {
                    "wall": now - self._started,
                    "load": self._t_load,
                    "save": self._t_save,
                    "train": max(0.0, now - self._started - self._t_load - self._t_save),
                },
                "step_s_median": self._batch_time.median() or self._epoch_time.median(),
                "checkpoint": None
                if ckpt is None
                else {
                    "file": str(self._store.directory / ckpt.file),
                    "digest": ckpt.digest,
                    "algorithm": ckpt.algorithm,
                    "size": ckpt.size,
                },
                "run_dir": str(self.run_dir),
            },
        )

    # -- user-facing extras ----------------------------------------------------------------------
    def log(self, **metrics: Any) -> None:
        """Record one row of metrics (with epoch, step and segment added); never duplicated on resume."""
        if not self._ranks.main:  # rank 0 keeps the log; the others only count rows
            self._metrics.seq += 1
            return
        row = {"epoch": self._epoch, "step": self._step, "segment": self.index, "time": time.time()}
        row.update(metrics)
        self._metrics.log(row)

    def done(self) -> None:
        """Mark the run finished: save the final state and report ``done``.

        Raises :class:`NotFinishedError` when called before ``seg.range(...)`` ran to its end.
        """
        if not self._finished_loop:
            where = (
                "before seg.range(...) was used"
                if self._total is None
                else f"at epoch {self._epoch}/{self._total}"
            )
            raise NotFinishedError(
                f"seg.done() called {where}; call it after the `for epoch in seg.range(n)` loop has "
                "run to its end"
            )
        if self._dirty or self._last_ckpt is None or not self._done:
            self._save()
        self._done = True
        self._write_status("done", "finished")
        self._say(f"done: {self.experiment} finished at epoch {self._epoch} (step {self._step})")
        self._close()

    @property
    def epoch(self) -> int:
        """The current epoch number."""
        return self._epoch

    @property
    def step(self) -> int:
        """Batches (or epochs, without ``iterate``) completed over the whole run."""
        return self._step

    @property
    def resumed(self) -> bool:
        """True when this segment continued from a checkpoint."""
        return self._last_ckpt is not None

    def _say(self, message: str) -> None:
        rank = f" rank {self._ranks.rank}" if self._ranks.active else ""
        print(f"[batcher{rank}] {message}", file=self._out, flush=True)


def _fast_forward(loader: Any, it: Iterator[Any], count: int) -> None:
    """Skip ``count`` batches; for a map-style DataLoader without workers, skip indices, not data."""
    from torch.utils.data import DataLoader, IterableDataset

    sampler_iter = getattr(it, "_sampler_iter", None)
    if (
        isinstance(loader, DataLoader)
        and loader.num_workers == 0
        and not isinstance(loader.dataset, IterableDataset)
        and sampler_iter is not None
        and hasattr(it, "_num_yielded")
    ):
        for _ in range(count):
            next(sampler_iter)
        it._num_yielded += count
        return
    for _ in range(count):
        next(it)


def segment(
    *,
    run_dir: str | os.PathLike[str] | None = None,
    values: Mapping[str, Any] | None = None,
    deadline: datetime | str | None = None,
    time_limit: Any = None,
    policy: Policy | None = None,
    margin_s: float | None = None,
    keep: int | None = None,
    signals: Iterable[str] | str | None = None,
    experiment: str | None = None,
    progress_every_s: float | None = None,
    clock: Callable[[], float] = time.time,
    env: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    **objects: Any,
) -> Segment:
    """Return the current segment of a run, with every object restored from its last checkpoint.

    Pass what must survive a stop as keywords (``model=..., optimizer=...``: anything with
    ``state_dict()``/``load_state_dict()``) and plain JSON values as ``values={...}``
    (read them back from ``seg.values``). The run folder is ``run_dir``, else
    ``$BATCHER_RUN_DIR``, else ``runs/<script name>``.

    The deadline is the earliest of ``deadline``/``time_limit``, ``$BATCHER_DEADLINE``,
    ``$BATCHER_TIME_LIMIT``, the Slurm job's end time and the ``policy`` (or ``$BATCHER_POLICY``)
    window; with none of them the loop runs to its end. ``margin_s`` (default 15, or
    ``$BATCHER_MARGIN_S``) is kept free before the deadline.
    """
    env = os.environ if env is None else env
    out = sys.stderr if out is None else out
    from torch.utils.data import DataLoader

    objects = {
        k: v for k, v in objects.items() if not (isinstance(v, DataLoader) and not hasattr(v, "state_dict"))
    }
    check_stateful(objects)
    run = Path(run_dir) if run_dir is not None else _default_run_dir(env)
    if run_dir is None and not env.get("BATCHER_RUN_DIR"):  # started by hand: one folder per script
        check_command(run, sys.argv, env)
    margin = margin_s if margin_s is not None else _env_float(env, "BATCHER_MARGIN_S", 15.0)
    keep_n = keep if keep is not None else int(_env_float(env, "BATCHER_KEEP", 2))
    sigs = parse_signals(
        signals if signals is not None else env.get("BATCHER_SIGNALS") or DEFAULT_STOP_SIGNALS
    )
    now = clock()
    started = process_start_time() if clock is time.time else datetime.fromtimestamp(now, tz=timezone.utc)
    dl = resolve_deadline(
        now=datetime.fromtimestamp(now, tz=timezone.utc),
        env=env,
        deadline=deadline,
        time_limit=time_limit,
        policy=policy,
        started=started,
    )
    index = _segment_index(env, run)
    status_file = (
        Path(env["BATCHER_STATUS_FILE"])
        if env.get("BATCHER_STATUS_FILE")
        else run / "status" / f"seg-{index:04d}.json"
    )
    seg = Segment(
        objects,
        run_dir=run,
        values=values or {},
        deadline=_DeadlineSeconds(dl),
        margin_s=margin,
        keep=keep_n,
        signals=StopSignals(sigs),
        status_file=status_file,
        index=index,
        experiment=experiment or env.get("BATCHER_EXPERIMENT") or run.name,
        clock=clock,
        progress_every_s=progress_every_s
        if progress_every_s is not None
        else _env_float(env, "BATCHER_PROGRESS_S", 60.0),
        out=out,
        store=CheckpointStore(run / "ckpt", keep=keep_n),
        slurm_warning=SlurmWarning.from_env(env),
    )
    try:
        seg._open()
    except BaseException:
        seg._close()
        raise
    return seg


def _at_script_end(seg: Segment) -> None:
    """Call ``seg._at_exit`` when the main script has ended (its loop ran out; ``done()`` may follow).

    ``threading``'s exit hook runs before ``concurrent.futures`` shuts its thread pools (which
    the store hashes on); ``atexit`` runs after that, too late to save. The hook holds the
    segment, which a script's ``main()`` may long have dropped.
    """
    register = getattr(threading, "_register_atexit", None)
    try:
        (register or atexit.register)(seg._at_exit)
    except RuntimeError:  # already shutting down (a loop run in an exit hook): no check
        pass


class _DeadlineSeconds:
    """A :class:`Deadline` with ``at`` as unix seconds, for cheap comparisons at every step."""

    def __init__(self, deadline: Deadline) -> None:
        self.at: float | None = None if deadline.at is None else deadline.at.timestamp()
        self.source = deadline.source
        self.warnings = deadline.warnings


def _segment_index(env: Mapping[str, str], run: Path) -> int:
    raw = env.get("BATCHER_SEGMENT")
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise BatcherError(f"BATCHER_SEGMENT={raw!r} is not an integer") from None
    status_dir = run / "status"
    try:
        return sum(1 for p in status_dir.glob("seg-*.json") if read_status(p) is not None)
    except OSError:
        return 0
