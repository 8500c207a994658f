"""The save protocol across ranks: one committed checkpoint, or the same error on every rank.

A single process (or DDP, whose state is the same on every rank) has rank 0 write one file
through the store. FSDP: rank 0 opens a temporary folder, every rank writes its shards into it
with ``torch.distributed.checkpoint``, and only if every rank succeeded does rank 0 commit it
(everything fsynced and hashed, renamed into place, listed in the manifest last). A failure on
any rank becomes one :class:`SaveError` raised on all of them; the previous checkpoint stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batcher.errors import BatcherError, SaveError
from batcher.files import remove_path
from batcher.metrics import MetricLog
from batcher.ranks import Ranks
from batcher.sharded import ShardedState
from batcher.store import CheckpointInfo, CheckpointStore

__all__ = ["CollectiveSave"]


class SaveFailed:
    """Rank 0's save error, sent to the other ranks so that all of them stop with it."""

    def __init__(self, message: str) -> None:
        self.message = message


class CollectiveSave:
    """Saves a run's state under ``torch.distributed`` or in one process."""

    def __init__(
        self, store: CheckpointStore, ranks: Ranks, sharded: ShardedState | None, metrics: MetricLog
    ) -> None:
        self.store = store
        self._ranks = ranks
        self._sharded = sharded
        self._metrics = metrics

    def save(self, state: dict[str, Any], *, step: int, segment: int) -> CheckpointInfo:
        """Commit ``state`` (an encoded :class:`~batcher.contents.TrainingState`) as the checkpoint
        of ``step``; every rank calls it and gets rank 0's manifest entry, or raises SaveError."""
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
            raise SaveError(
                f"rank 0 could not save: {info.message}" if not self._ranks.main else info.message
            )
        assert info is not None
        return info

    def _save_sharded(
        self, state: dict[str, Any], step: int, segment: int
    ) -> CheckpointInfo | SaveFailed | None:
        """Every rank writes its shards into rank 0's temporary folder; rank 0 commits it.

        Returns rank 0's result (None on the other ranks; the caller broadcasts it).
        """
        assert self._sharded is not None
        tmp: Path | SaveFailed | None = None
        if self._ranks.main:
            try:
                self._metrics.sync()
                tmp = self.store.prepare_sharded(step)
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
                    + f"; check free space and permissions of {self.store.directory}. "
                    + self.store.keep_note(step)
                )
            return None
        if not self._ranks.main:
            return None
        try:
            return self.store.commit_sharded(state, step=step, segment=segment)
        except BatcherError as exc:
            return SaveFailed(str(exc))
