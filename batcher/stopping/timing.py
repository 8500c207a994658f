"""Predicting how long the next step and the next save will take, from measured times."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

__all__ = ["DurationEstimator", "SaveEstimator"]


class DurationEstimator:
    """A high quantile of the recent durations: robust to one slow outlier, wary of slow tails.

    With fewer than 10 samples the maximum is used (the first steps of a job are the least known),
    except for one value alone more than ``OUTLIER`` times the median of at least two others
    (a step that met a loaded machine once): it is taken as transient, or one slow step would hold
    every prediction at its length until ten more were measured. :meth:`typical` is the median.
    A segment's first step (``warm_up``: ``torch.compile``, loader workers, caches) is kept apart:
    it is the prediction only while nothing else was measured, and never enters the history, so
    one compile per segment cannot pile up in the window and cut every later slot short.
    """

    OUTLIER = 4.0

    def __init__(self, window: int = 64, quantile: float = 0.9, history: Iterable[float] = ()) -> None:
        self._values: deque[float] = deque(history, maxlen=window)
        self._quantile = quantile
        self._warm_up: float | None = None

    def add(self, seconds: float) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            self._values.append(seconds)

    def warm_up(self, seconds: float) -> None:
        """Record the first duration of a segment (see the class docstring)."""
        if seconds >= 0 and math.isfinite(seconds):
            self._warm_up = seconds

    def __len__(self) -> int:
        return len(self._values)

    def history(self) -> list[float]:
        return list(self._values)

    def predict(self) -> float | None:
        """Return the predicted next duration in seconds, None before any measurement."""
        if not self._values:
            return self._warm_up
        ordered = sorted(self._values)
        if len(ordered) < 10:
            rest = ordered[:-1]
            if len(rest) >= 2 and ordered[-1] > self.OUTLIER * _median(rest) >= rest[-1]:
                return rest[-1]  # one outlier alone; a second one would be a slow tail
            return ordered[-1]
        index = min(len(ordered) - 1, math.ceil(self._quantile * len(ordered)) - 1)
        return ordered[index]

    def median(self) -> float | None:
        return _median(sorted(self._values)) if self._values else None

    def typical(self) -> float | None:
        """The median of the measured durations (the warm-up while none is): what a step takes
        when nothing unusual happens."""
        return self.median() if self._values else self._warm_up


def _median(ordered: list[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class SaveEstimator:
    """Predicts save time: measured saves scaled by state size, else a cautious bandwidth guess."""

    #: assumed write+fsync bandwidth before anything was measured (slow network file systems)
    GUESS_BYTES_PER_S = 50e6
    GUESS_FIXED_S = 1.0

    def __init__(self, history: Iterable[tuple[float, int]] = ()) -> None:
        self._saves: deque[tuple[float, int]] = deque(history, maxlen=8)

    def add(self, seconds: float, size: int) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            self._saves.append((seconds, size))

    def history(self) -> list[tuple[float, int]]:
        return list(self._saves)

    def predict(self, size: int) -> float:
        """Return the predicted seconds to save ``size`` bytes (with a 1.5x safety factor once measured)."""
        if not self._saves:
            return self.GUESS_FIXED_S + size / self.GUESS_BYTES_PER_S
        worst = max(s * max(1.0, size / max(n, 1)) for s, n in self._saves)
        return 1.5 * worst + 0.2
