"""What a segment checkpoints of the train script: its objects and ``seg.values``.

The objects are split once: an FSDP model and its optimizers are saved as shards by every rank
(also on a world of one rank, so that a run can move between world sizes: DCP reshards), every
other object (``state_dict()``/``load_state_dict()``) by rank 0. :class:`TrainingObjects`
captures them into a :class:`batcher.ckpt.training_state.TrainingState` and restores them
from one, and guesses the next checkpoint's size before one was saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batcher.api.replay import is_loader
from batcher.ckpt.captured import load_objects, load_values, save_objects, save_values, state_bytes
from batcher.ckpt.sharded import ShardedState, load_sharded
from batcher.ckpt.training_state import TrainingState

__all__ = ["TrainingObjects"]


class TrainingObjects:
    """The script's checkpointed objects, and ``values`` (the dict the script sees as ``seg.values``)."""

    def __init__(self, objects: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self.stateful = {k: v for k, v in objects.items() if hasattr(v, "state_dict")}
        self.sharded = ShardedState.find(self.stateful)
        names = self.sharded.names if self.sharded else set()
        self.replicated = {k: v for k, v in self.stateful.items() if k not in names}
        self.values = dict(values)
        self._given = dict(values)  # what a checkpoint's values replace, not add to

    def is_loader_given(self, loader: object) -> bool:
        """``loader`` was passed to ``batcher.segment`` (it saves and resumes its own position)."""
        return any(loader is obj for obj in self.stateful.values())

    def replicated_state(self) -> dict[str, Any]:
        return save_objects(self.replicated)

    def sharded_names(self) -> list[str]:
        return sorted(self.sharded.names) if self.sharded else []

    def saved_values(self) -> Any:
        return save_values(self.values)

    def size_guess(self) -> int:
        """The tensors of every object but the loaders. A loader is never asked: a
        StatefulDataLoader's ``state_dict()`` before its epoch begins starts the epoch's iterator
        there and then, which draws its seeds from the global RNG earlier than a run that does
        not ask (a run without a deadline) would."""
        return state_bytes(save_objects({k: v for k, v in self.stateful.items() if not is_loader(v)}))

    def restore(self, saved: TrainingState, *, where: str) -> None:
        """Put ``saved``'s objects and values in place. A newer checkpoint may have been applied
        before its hash failed: nothing of it stays (the values start again from those given)."""
        load_sharded(self.sharded, saved.sharded_dir, where=where)
        load_objects(self.replicated, saved.objects, where=where)
        self.values.clear()
        self.values.update(self._given)
        self.values.update(load_values(saved.values, self._given))
