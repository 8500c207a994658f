"""Where a segment's loops are: epoch, batch, step and tick, and which boundary comes next.

``seg.range`` and ``seg.iterate`` count here; :class:`LoopCount` also says which kinds of work
(a batch, an epoch's tail without batches) may come before the next boundary, which is what the
stop's prediction needs, and when a boundary must not be a place to stop (``hold``).
"""

from __future__ import annotations

from batcher.ckpt.training_state import Position

__all__ = ["LoopCount"]

Kinds = tuple[str, ...]


class LoopCount:
    """The counters of a segment's loops (a :class:`Position`) and what the loops have shown."""

    def __init__(self) -> None:
        self.pos = Position()
        self.start_step = self.start_tick = 0  # where this segment began
        self.total: int | None = None  # seg.range's stop, once called
        self.epoch_len: int | None = None  # the loader's length in this epoch, when it has one
        self.per_step = 0  # global samples a step of this epoch consumes (0: unknown)
        self.uses_iterate = False  # the script iterates batches with seg.iterate (seen in this run)
        self._iterated_this_epoch = False

    def resumed_at(self, pos: Position, *, uses_iterate: bool) -> None:
        self.pos, self.uses_iterate = pos, uses_iterate
        self.start_step, self.start_tick = pos.step, pos.tick

    @property
    def first_step(self) -> bool:
        """No boundary was passed yet in this segment (its first step: compile, workers, caches)."""
        return self.pos.tick == self.start_tick

    @property
    def steps_here(self) -> int:
        return self.pos.step - self.start_step

    def epoch_start_kinds(self) -> Kinds:
        """What runs before the next boundary when an epoch begins."""
        return ("batch",) if self.uses_iterate else ("epoch",)

    def epoch_ended(self) -> bool:
        """Count the end of an epoch; True when another epoch follows in ``seg.range``."""
        self.pos.epoch += 1
        self.pos.batch, self.pos.samples, self.epoch_len = 0, 0, None
        if not self._iterated_this_epoch:  # an epoch without seg.iterate is one step
            self.pos.step += 1
        self._iterated_this_epoch = False
        if self.total is not None and self.pos.epoch < self.total:
            return True
        self.pos.tick += 1  # the loop is over: seg.done() saves next, no boundary to stop at
        return False

    def batches_begin(self, epoch_len: int | None, per_step: int = 0) -> None:
        """An epoch's batches begin: ``epoch_len`` batches in it (done ones included), each step
        consuming ``per_step`` samples across the ranks."""
        self.uses_iterate = self._iterated_this_epoch = True
        self.epoch_len, self.per_step = epoch_len, per_step

    def batch_ended(self) -> tuple[Kinds, bool]:
        """Count a batch; return what may run before the next boundary, and whether this one holds
        (is no place to stop or save)."""
        self.pos.batch += 1
        self.pos.step += 1
        self.pos.samples += self.per_step
        left = None if self.epoch_len is None else self.epoch_len - self.pos.batch
        if left is not None and left <= 0:
            # the epoch's batches are done, its tail (the code after the batch loop) runs next: no
            # stop or save before it reaches seg.range's boundary, or a resume would run that tail
            # again with no batch (the tail's time was in the last prediction)
            return ("epoch",), True
        return (("batch", "epoch") if left == 1 else ("batch",)), False

    def where(self) -> str:
        """The loop's place, for messages."""
        if self.total is None:
            return "before seg.range(...) was used"
        return f"at epoch {self.pos.epoch}/{self.total}"
