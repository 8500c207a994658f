"""Where a run is in its loops, and how a resumed epoch finds its place again.

``Position`` counts epochs, batches within the epoch, steps over the whole run (the number the
checkpoint names, logs, status and metrics use) and boundaries passed. ``EpochReplay`` captures the
RNG state as an epoch begins, so a plain ``DataLoader`` resumed mid-epoch replays the same shuffle
and skips the batches already done (:func:`fast_forward`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from batcher.state import capture_rng, restore_rng

__all__ = ["EpochReplay", "Position", "fast_forward", "loader_length"]

T = TypeVar("T")


@dataclass
class Position:
    """The loop's place: ``batch`` batches done in ``epoch``; ``step`` steps (batches, or epochs
    without ``seg.iterate``) done over the run; ``tick`` boundaries passed (steps and epoch ends)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    tick: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Position:
        return cls(int(doc["epoch"]), int(doc["batch"]), int(doc["step"]), int(doc["tick"]))


class EpochReplay:
    """The RNG state at the start of the current epoch, for a plain loader's mid-epoch resume."""

    def __init__(self) -> None:
        self.epoch_rng: dict[str, Any] | None = None  # this epoch's, saved with a mid-epoch checkpoint
        self._resume_rng: dict[str, Any] | None = None  # the restored epoch's, used once

    def resume_from(self, epoch_rng: dict[str, Any] | None) -> None:
        self._resume_rng = epoch_rng

    def begin(self, skip: int) -> dict[str, Any] | None:
        """Enter an epoch's batches with ``skip`` of them done: put back the RNG state the
        epoch began with (returning the current one, to restore after the skip), or record it."""
        current = None
        if skip and self._resume_rng is not None:
            current = capture_rng()
            restore_rng(self._resume_rng)
            self.epoch_rng = self._resume_rng
        else:
            self.epoch_rng = capture_rng()
        self._resume_rng = None
        return current

    def forget_resume(self) -> None:
        """A loader that resumes by itself (``state_dict()``) needs no replay."""
        self._resume_rng = None

    def batches(self, loader: Iterable[T], skip: int, *, self_resuming: bool) -> Iterator[T]:
        """An iterator over ``loader``'s batches with the first ``skip`` already done: a plain
        loader is replayed from the epoch's starting RNG state and skipped; a loader with its own
        ``state_dict()`` (``self_resuming``) was restored already and starts where it stopped."""
        if self_resuming:
            self.forget_resume()
            return iter(loader)
        current = self.begin(skip)
        it = iter(loader)
        if skip:
            fast_forward(loader, it, skip)
            if current is not None:
                restore_rng(current)
        return it

    def end_epoch(self) -> None:
        self.epoch_rng = None
        self._resume_rng = None


def fast_forward(loader: Any, it: Iterator[Any], count: int) -> None:
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


def loader_length(loader: Iterable[Any]) -> int | None:
    """Batches per epoch, or None for a loader without a length (an iterable dataset, a generator)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
