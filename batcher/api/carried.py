"""What a checkpoint carries from one segment to the next, and where it lives in a running one.

:class:`Carried` puts a :class:`batcher.ckpt.training_state.TrainingState` in place in a segment
(the script's objects and values, the loops' position rescaled to this world size, the RNG
states, the epoch's replay, the stop's measurements) and captures all of it back into one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batcher.api.counting import LoopCount
from batcher.api.objects import TrainingObjects
from batcher.api.replay import EpochReplay
from batcher.ckpt.captured import capture_rng, restore_rng
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.reading import LoadedCheckpoint
from batcher.ckpt.store import CheckpointInfo, CheckpointStore
from batcher.ckpt.training_state import Position, TrainingState
from batcher.stopping.decision import StopDecision

__all__ = ["Carried"]


class Carried:
    """The live places of a checkpoint's contents; ``segment`` is this segment's index."""

    def __init__(
        self, objects: TrainingObjects, ranks: Ranks, stop: StopDecision, count: LoopCount,
        replay: EpochReplay, *, segment: int,
    ) -> None:  # fmt: skip
        self._objects, self._ranks, self._stop = objects, ranks, stop
        self._count, self._replay, self._segment = count, replay, segment
        self._rng: dict[str, Any] | None = None  # put back when seg.range begins
        self.metrics_seq = 0  # metric rows logged up to the checkpoint
        self.done = False  # the checkpoint holds a finished run

    def load(self, store: CheckpointStore, *, say: Callable[[str], None]) -> LoadedCheckpoint | None:
        """Restore the newest checkpoint in ``store`` that every rank reads whole, if any;
        ``say`` hears of the checkpoints passed over and of a rescaled position (rank 0)."""

        def apply(state: dict[str, Any], info: CheckpointInfo) -> None:
            saves = [(e.save_s, e.size) for e in store.entries() if e.save_s]
            rescaled = self.restore(state, where=str(store.directory / info.file), saves=saves)
            if rescaled and self._ranks.main:
                say(f"WARNING: {rescaled}")

        scope = self._objects.sharded.files_read if self._objects.sharded is not None else None
        loaded = store.load_latest(apply=apply, scope=scope, agree=self._ranks.all_good)
        for problem in loaded.problems if loaded else []:
            say(f"WARNING: {problem}")
        return loaded

    def restore(self, state: dict[str, Any], *, where: str, saves: list[tuple[float, int]]) -> str | None:
        """Put ``state`` (a checkpoint, read from ``where``; ``saves``: the store's measured save
        times and sizes) in place. Returns a warning when the position was rescaled to another
        number of ranks. A newer checkpoint applied before its hash failed leaves nothing behind."""
        saved = TrainingState.decode(state, where=where)
        self._objects.restore(saved, where=where)
        pos, rescaled = saved.position_on(self._ranks.world)
        self._rng, epoch_rng = saved.rng_of(self._ranks.rank)
        self._replay.resume_from(epoch_rng, loader_live=saved.loader_live)
        self._stop.restore(saved.timing, saves)
        self._count.resumed_at(pos, uses_iterate=len(self._stop.batch_time) > 0)
        self.metrics_seq, self.done = saved.metrics_seq, saved.done
        return rescaled

    def put_back_rng(self) -> None:
        """The RNG states as they were at the checkpoint (once, when the loop begins)."""
        if self._rng is not None:
            restore_rng(self._rng)
            self._rng = None

    def capture(self, *, metrics_seq: int, done: bool) -> TrainingState:
        """The segment's state now. Gathering the RNG states is a collective: every rank calls it."""
        pos = self._count.pos
        mid_epoch = pos.batch > 0 or pos.samples > 0
        return TrainingState(
            objects=self._objects.replicated_state(),
            values=self._objects.saved_values(),
            pos=Position(**pos.as_dict()),
            rng_by_rank=self._ranks.gather(capture_rng()),
            epoch_rng_by_rank=self._ranks.gather(self._replay.epoch_rng if mid_epoch else None),
            sharded=self._objects.sharded_names(),
            total=self._count.total,
            metrics_seq=metrics_seq,
            timing=self._stop.history(),
            loader_live=self._replay.loader_live(mid_epoch=mid_epoch),
            segment=self._segment,
            done=done,
        )
