"""How a resumed epoch finds its place again in its data loader.

``EpochReplay`` captures the
RNG state as an epoch begins, so a plain ``DataLoader`` resumed mid-epoch replays the same shuffle
and skips the batches already done (:func:`skipping_iter`: indices only, even with workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, cast

from batcher.ckpt.captured import capture_rng, restore_rng

__all__ = ["EpochReplay", "is_loader", "loader_length", "resume_notice", "skipping_iter"]

T = TypeVar("T")


class EpochReplay:
    """The RNG state at the start of the current epoch, for a plain loader's mid-epoch resume.

    :meth:`loader_live` (saved with the checkpoint): the loader's persistent workers were running
    when the checkpoint's epoch began (a mid-epoch checkpoint) or are running now (at an epoch's
    end). Such a loader only restarts its sampler at an epoch's start, while the resumed process
    must start the workers anew, which draws their base seed from the global RNG first; told so,
    the resumed process puts the RNG back before the sampler draws, as the uninterrupted run's
    sampler drew.
    """

    def __init__(self) -> None:
        self.epoch_rng: dict[str, Any] | None = None  # this epoch's, saved with a mid-epoch checkpoint
        self._resume_rng: dict[str, Any] | None = None  # the restored epoch's, used once
        self._live_at_start = self._live_now = False
        self._resume_live = False
        self._restored = False  # a checkpoint was loaded and no epoch's batches began since

    def resume_from(self, epoch_rng: dict[str, Any] | None, *, loader_live: bool = False) -> None:
        self._resume_rng = epoch_rng
        self._resume_live = loader_live
        self._restored = True

    def begin(self, mid_epoch: bool) -> dict[str, Any] | None:
        """Enter an epoch's batches, resumed ``mid_epoch`` or not: put back the RNG state the
        epoch began with (returning the current one, to restore after the skip), or record it."""
        current = None
        if mid_epoch and self._resume_rng is not None:
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

    def batches(
        self, loader: Iterable[T], skip: int, *, self_resuming: bool, mid_epoch: bool | None = None
    ) -> Iterator[T]:
        """An iterator over ``loader``'s batches with the first ``skip`` already done: a plain
        loader is replayed from the epoch's starting RNG state and skipped; a loader with its own
        ``state_dict()`` (``self_resuming``) was restored already and starts where it stopped.
        ``mid_epoch`` (default: ``skip > 0``): the epoch was resumed, even if its sampler leaves
        out the done samples by itself (``skip`` 0, see :mod:`batcher.api.elastic`)."""
        mid_epoch = skip > 0 if mid_epoch is None else mid_epoch
        restored, self._restored = self._restored, False
        if self_resuming:
            self.forget_resume()
            if not (mid_epoch or restored):
                return iter(loader)
            # It takes up its restored state first (a StatefulDataLoader builds the iterator it
            # saved, drawing a worker seed from the global RNG): the run it resumes drew that
            # before the checkpoint, so the RNG is put back. Restored at an epoch's end, it then
            # starts the next epoch afresh, drawing what the uninterrupted run drew there.
            now = capture_rng()
            loader.state_dict()  # type: ignore[attr-defined]
            restore_rng(now)
            return iter(loader)
        current = self.begin(mid_epoch)
        restarted = self._resume_live and _starts_persistent_workers(loader)
        self._resume_live = False
        self._live_at_start = restarted or _has_live_workers(loader)
        it = skipping_iter(loader, skip, sampler_rng=capture_rng() if restarted else None)
        self._live_now = _has_live_workers(loader)
        if current is not None:
            restore_rng(current)
        return it

    def loader_live(self, *, mid_epoch: bool) -> bool:
        """For the checkpoint: the loader's persistent workers were running as its epoch began
        (``mid_epoch``), or are running now."""
        return self._live_at_start if mid_epoch else self._live_now

    def end_epoch(self) -> None:
        self.epoch_rng = None
        self._resume_rng = None


_END = object()


def _starts_persistent_workers(loader: Any) -> bool:
    from torch.utils.data import DataLoader

    return (
        isinstance(loader, DataLoader)
        and loader.num_workers > 0
        and loader.persistent_workers
        and getattr(loader, "_iterator", None) is None
    )


def _has_live_workers(loader: Any) -> bool:
    from torch.utils.data import DataLoader

    return isinstance(loader, DataLoader) and loader.persistent_workers and loader._iterator is not None


class _SkipFirst:
    """An index sampler whose next iteration leaves out its first ``skip`` items (drawn, never
    loaded) and, given ``rng``, first puts that RNG state back (after the DataLoader iterator
    drew its workers' base seed); every later iteration is the wrapped sampler's own."""

    def __init__(self, inner: Any, skip: int, rng: dict[str, Any] | None = None) -> None:
        self.inner, self.skip, self.rng = inner, skip, rng

    def __iter__(self) -> Iterator[Any]:
        if self.rng is not None:
            rng, self.rng = self.rng, None
            restore_rng(rng)
        it = iter(self.inner)  # as lazy as the sampler: its shuffle is drawn at the first next()
        skip, self.skip = self.skip, 0
        for _ in range(skip):
            if next(it, _END) is _END:
                return
        yield from it

    def __len__(self) -> int:
        return len(self.inner)


def skipping_iter(
    loader: Iterable[T], skip: int, *, sampler_rng: dict[str, Any] | None = None
) -> Iterator[T]:
    """``iter(loader)`` with its first ``skip`` batches left out.

    A map-style ``DataLoader`` draws the skipped batches' indices from its sampler (the same
    shuffle, the same random draws in the same order) and never fetches them: its workers start at
    the first remaining batch, so the skip costs the same wherever the epoch stopped. Anything
    else is iterated through the skipped batches (an ``IterableDataset`` must produce them).
    ``sampler_rng``: the RNG state the sampler must draw from (see :class:`EpochReplay`).
    """
    from torch.utils.data import DataLoader, IterableDataset

    if not skip and sampler_rng is None:
        return iter(loader)
    map_style = isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
    if map_style and loader.num_workers == 0:  # type: ignore[attr-defined]
        it = iter(loader)
        sampler_iter = getattr(it, "_sampler_iter", None)
        if sampler_iter is not None and hasattr(it, "_num_yielded"):
            # drawn now, while the epoch's starting RNG state is in place (the caller puts the
            # current one back next); a single-process loader draws nothing else
            for _ in range(skip):  # a skip past the end (another world size) ends the epoch
                if next(sampler_iter, _END) is _END:
                    break
            it._num_yielded += skip
            return it
    elif map_style:
        attr = "batch_sampler" if cast(Any, loader).batch_sampler is not None else "sampler"
        original = getattr(loader, attr)
        wrapper = _SkipFirst(original, skip, sampler_rng)
        object.__setattr__(loader, attr, wrapper)  # DataLoader refuses a plain setattr
        try:
            it = iter(loader)
        finally:
            object.__setattr__(loader, attr, original)
        # the workers' first batches were requested as the iterator started: the shuffle and
        # the skip were drawn then, after the workers' base seed, as in an uninterrupted epoch
        if getattr(it, "_index_sampler", None) is wrapper:
            it._num_yielded = skip  # type: ignore[attr-defined]
            return it
        # a persistent-workers iterator made before (e.g. by a validation pass) keeps its sampler
        wrapper.skip = 0
    else:
        it = iter(loader)
    for _ in range(skip):
        if next(it, _END) is _END:
            break
    return it


def resume_notice(loader: Iterable[Any], skip: int, seconds: float, *, self_resuming: bool) -> str | None:
    """What a mid-epoch resume that skipped ``skip`` batches of ``loader`` in ``seconds`` should tell
    the user, if anything: when it may not be exact, or when it had to replay."""
    from torch.utils.data import DataLoader, IterableDataset

    if not skip or self_resuming:
        return None
    name = type(loader).__name__
    if hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict"):
        return (
            f"seg.iterate got a {name} with state_dict(), but batcher.segment(...) was not given it, so "
            f"its {skip} done batches were replayed ({seconds:.1f}s) instead of resumed from its own "
            "state; pass it as batcher.segment(..., loader=...)"
        )
    if isinstance(loader, DataLoader) and isinstance(loader.dataset, IterableDataset):
        return (
            f"resumed mid-epoch by replaying {skip} batches of an IterableDataset ({seconds:.1f}s; it "
            "grows with the position in the epoch): a dataset without state must produce them "
            "again. Give it state_dict()/load_state_dict() and use torchdata's StatefulDataLoader, "
            "passed to batcher.segment(..., loader=...), to resume without replaying"
        )
    if isinstance(loader, DataLoader) and loader.num_workers > 0:
        return (
            f"resumed mid-epoch: the DataLoader's workers start at batch {skip} without loading "
            "the skipped ones. Random numbers drawn inside the workers (augmentation) differ from "
            "an uninterrupted run; for an exact resume use torchdata's StatefulDataLoader (README, "
            "'What is saved')"
        )
    if seconds >= 1.0:
        return (
            f"resumed mid-epoch by replaying {skip} batches of a {name} ({seconds:.1f}s): an "
            "iterable without state_dict()/load_state_dict() must produce them again"
        )
    return None


def loader_length(loader: Iterable[Any]) -> int | None:
    """Batches per epoch, or None for a loader without a length (an iterable dataset, a generator)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def is_loader(obj: Any) -> bool:
    """True for a checkpointed object that hands out data (iterable, and no torch module: a
    ``Sequential`` is iterable too): its ``state_dict()`` is only asked for to save it."""
    from torch import nn

    return hasattr(obj, "__iter__") and not isinstance(obj, nn.Module)
