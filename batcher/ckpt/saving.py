"""The save protocol across ranks: one committed checkpoint, or the same error on every rank.

A single process (or DDP, whose state is the same on every rank) has rank 0 write one file
through the store. FSDP: rank 0 opens a temporary folder, every rank writes its shards into it
with ``torch.distributed.checkpoint``, and only if every rank succeeded does rank 0 commit it
(everything fsynced and hashed, renamed into place, listed in the manifest last). A failure on
any rank becomes one :class:`SaveError` raised on all of them; the previous checkpoint stays.

A save in the background (:meth:`CollectiveSave.start`) stalls training only while the state is
copied to host memory (:class:`~batcher.ckpt.snapshot.HostSnapshot`; under FSDP, DCP's stager); a
thread then writes, hashes, fsyncs and commits it exactly as above. At most one is in flight:
the next save waits for it. Its failure is kept until the loop asks (:meth:`CollectiveSave.poll`
at a step boundary, :meth:`CollectiveSave.wait`), then raised on every rank as the same
:class:`SaveError`. The writer thread is not a daemon: the interpreter waits for it at exit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batcher.ckpt.ranks import Ranks
from batcher.ckpt.sharded import ShardedState
from batcher.ckpt.snapshot import HostSnapshot
from batcher.ckpt.store import CheckpointInfo, CheckpointStore
from batcher.errors import BatcherError, SaveError
from batcher.run.atomic_files import remove_path
from batcher.run.background import Background
from batcher.run.metrics import MetricLog

__all__ = ["CollectiveSave"]


class SaveFailed:
    """Rank 0's save error, sent to the other ranks so that all of them stop with it."""

    def __init__(self, message: str) -> None:
        self.message = message

    def error(self, main: bool) -> SaveError:
        """The error each rank raises: rank 0 says what went wrong, the others also whose save it was."""
        return SaveError(self.message if main else f"rank 0: {self.message}")


class CollectiveSave:
    """Saves a run's state under ``torch.distributed`` or in one process."""

    def __init__(
        self, store: CheckpointStore, ranks: Ranks, sharded: ShardedState | None, metrics: MetricLog
    ) -> None:
        self.store = store
        self._ranks = ranks
        self._sharded = sharded
        self._metrics = metrics
        self._snapshot = HostSnapshot()
        self._flight: Background[CheckpointInfo | None] | None = None  # this rank's write in flight
        self._flight_step = 0
        self._in_flight = False  # the same on every rank: a background save not yet waited for
        self._reported = False  # rank 0: poll() already returned the outcome of the one in flight
        self.last_stall_s = 0.0

    def save(self, state: dict[str, Any], *, step: int, segment: int) -> CheckpointInfo:
        """Commit ``state`` (an encoded :class:`~batcher.ckpt.training_state.TrainingState`) as the checkpoint
        of ``step``; every rank calls it and gets rank 0's manifest entry, or raises SaveError.
        Call :meth:`wait` first when a background save may be in flight."""
        assert not self._in_flight, "wait() for the background save first"
        info: CheckpointInfo | SaveFailed | None = None
        if self._sharded is not None:
            info = self._save_sharded(state, step, segment)
        elif self._ranks.main:
            try:
                self._metrics.sync()  # the rows the checkpoint counts are on disk first
                info = self.store.save(state, step=step, segment=segment)
            except BatcherError as exc:
                info = SaveFailed(str(exc))
                if not self._ranks.active:
                    raise
        info = self._ranks.from_main(info if self._ranks.main else None)
        if isinstance(info, SaveFailed):
            raise info.error(self._ranks.main)
        assert info is not None
        return info

    def _shard_folder(self, step: int) -> Path | SaveFailed:
        """Rank 0 syncs the metric rows and makes the temporary folder of ``step``'s shards; every
        rank gets the folder, or rank 0's error."""
        tmp: Path | SaveFailed | None = None
        if self._ranks.main:
            try:
                self._metrics.sync()
                tmp = self.store.prepare_sharded(step)
            except BatcherError as exc:
                tmp = SaveFailed(str(exc))
        tmp = self._ranks.from_main(tmp)
        assert tmp is not None
        return tmp

    def _shards_failed(self, folder: Path, problem: str, step: int) -> str:
        """Rank 0, after a shard write failed on some rank: remove the folder; the error message."""
        remove_path(folder)
        return (
            f"{problem}; check free space and permissions of {self.store.directory}. "
            + self.store.keep_note(step)
        )

    def _save_sharded(
        self, state: dict[str, Any], step: int, segment: int
    ) -> CheckpointInfo | SaveFailed | None:
        """Every rank writes its shards into rank 0's temporary folder; rank 0 commits it.

        Returns rank 0's result (None on the other ranks; the caller broadcasts it).
        """
        assert self._sharded is not None
        tmp = self._shard_folder(step)
        if isinstance(tmp, SaveFailed):
            return tmp
        problem = ""
        try:
            self._sharded.save(tmp)
        except Exception as exc:  # DCP raises on every rank when any rank failed to write
            problem = f"writing the shards to {tmp} failed ({type(exc).__name__}: {exc})"
        if self._ranks.agree_stop(1 if problem else 0):  # anyone failed: nobody commits
            if self._ranks.main:
                return SaveFailed(
                    self._shards_failed(tmp, problem or "another rank could not write its shards", step)
                )
            return None
        if not self._ranks.main:
            return None
        try:
            return self.store.commit_sharded(state, step=step, segment=segment)
        except BatcherError as exc:
            return SaveFailed(str(exc))

    # -- in the background -----------------------------------------------------------------------
    def start(self, state: dict[str, Any], *, step: int, segment: int) -> float:
        """Copy ``state`` to host memory and commit it as the checkpoint of ``step`` on a thread;
        every rank calls it. Returns the seconds training was held up. Call :meth:`wait` first."""
        assert not self._in_flight, "wait() for the background save first"
        t0 = time.perf_counter()
        if self._sharded is not None:
            self._start_sharded(state, step, segment)
        elif self._ranks.main:
            self._metrics.sync()  # the rows the checkpoint counts are on disk first
            copied = self._snapshot.take(state)
            self._flight = self._writer(lambda: self.store.save(copied, step=step, segment=segment), step)
        self._in_flight, self._reported = True, False
        self.last_stall_s = time.perf_counter() - t0
        return self.last_stall_s

    def _start_sharded(self, state: dict[str, Any], step: int, segment: int) -> None:
        assert self._sharded is not None
        tmp = self._shard_folder(step)
        if isinstance(tmp, SaveFailed):
            raise tmp.error(self._ranks.main)
        folder = tmp
        future = self._sharded.save_async(folder)  # stages this rank's shards, writes them on a thread
        if not self._ranks.main:
            self._flight = self._writer(lambda: future.result() and None, step)
            return
        rest = self._snapshot.take(state)

        def commit() -> CheckpointInfo:
            try:
                future.result()  # DCP raises on every rank when any rank failed to write
            except Exception as exc:
                problem = f"writing the shards to {folder} failed ({type(exc).__name__}: {exc})"
                raise SaveError(self._shards_failed(folder, problem, step)) from exc
            return self.store.commit_sharded(rest, step=step, segment=segment)

        self._flight = self._writer(commit, step)

    def _writer(
        self, work: Callable[[], CheckpointInfo | None], step: int
    ) -> Background[CheckpointInfo | None]:
        self._flight_step = step
        return Background(work, name="batcher-checkpoint-writer")

    def prepare(self, objects: dict[str, Any]) -> None:
        """Let the host buffers of the coming background saves be allocated on a thread (rank 0
        of a replicated state; DCP's stager allocates its own under FSDP)."""
        if self._sharded is None and self._ranks.main:
            self._snapshot.prepare(objects)

    def poll(self) -> CheckpointInfo | BaseException | None:
        """Rank 0, at a step boundary, without blocking: the background save's outcome (its manifest
        entry or its error) the first time it is seen finished; else None."""
        flight = self._flight
        if flight is None or self._reported or flight.running or not self._ranks.main:
            return None
        self._reported = True
        return flight.error if flight.error is not None else flight.result()

    def wait(self) -> CheckpointInfo | None:
        """Wait for the background save (every rank calls it); return its manifest entry, None when
        none was in flight, or raise its failure as :class:`SaveError` on every rank."""
        if not self._in_flight:
            return None
        flight, self._flight, self._in_flight = self._flight, None, False
        outcome: CheckpointInfo | SaveFailed | None = None
        if flight is not None:
            flight.join()
            if flight.error is not None:
                error = flight.error
                message = (
                    str(error) if isinstance(error, BatcherError) else f"{type(error).__name__}: {error}"
                )
                outcome = SaveFailed(f"saving step {self._flight_step} in the background failed: {message}")
            else:
                outcome = flight.result()
        outcome = self._ranks.from_main(outcome if self._ranks.main else None)
        if isinstance(outcome, SaveFailed):
            raise outcome.error(self._ranks.main)
        return outcome

    def abandon(self) -> None:
        """Let a write in flight finish, without collectives or errors (a segment ending by an error)."""
        if self._flight is not None:
            self._flight.join()
        self._flight, self._in_flight = None, False
        self._snapshot.release()
        if self._sharded is not None:
            self._sharded.close()
