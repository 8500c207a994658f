"""The stop margin, learned from the run's own prediction errors.

The predictive stop begins a step only when the predicted step plus the predicted save end
``margin`` seconds before the deadline. The margin is what covers a prediction that was too
short: a step slower than its high-quantile estimate, a save slower than its measured rate. So it
is learned from exactly that: after every step, how much longer it took than predicted; after
every save, how much longer than predicted; after a segment that ended past its deadline, by how
much. The margin is a high quantile of the step errors plus the largest recent save error plus
a small floor, carried across segments in the checkpoint like the step times:

- no evidence yet (fewer than :data:`MIN_STEPS` step errors): the conservative default, 15 s,
  or the learned one if larger;
- a predictable run: the floor (2 s) plus its small errors, within the first segment whose steps
  give enough evidence;
- a surprise or an overrun: it enters the evidence at once and the margin grows with it, until
  it leaves the window.

A ``margin_s`` given explicitly (argument, ``BATCHER_MARGIN_S``, workflow setting) is a fixed
override: nothing is learned then.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_MARGIN_S", "FLOOR_S", "MIN_STEPS", "LearnedMargin"]

DEFAULT_MARGIN_S = 15.0
#: seconds kept free however predictable the run: the exit after the status file, clock jitter
FLOOR_S = 2.0
#: step errors needed before the margin may fall below the default
MIN_STEPS = 20
QUANTILE = 0.99


class LearnedMargin:
    """Seconds to keep free before the deadline, from the run's prediction errors (see the module)."""

    def __init__(
        self,
        *,
        fixed_s: float | None = None,
        history: Mapping[str, Any] | None = None,
        window: int = 256,
    ) -> None:
        self.fixed_s = fixed_s
        history = history or {}
        self._steps: deque[float] = deque(_floats(history.get("steps", ())), maxlen=window)
        self._saves: deque[float] = deque(_floats(history.get("saves", ())), maxlen=8)

    @property
    def learned(self) -> bool:
        return self.fixed_s is None

    @property
    def seconds(self) -> float:
        """The margin in force now."""
        if self.fixed_s is not None:
            return self.fixed_s
        evidence = FLOOR_S + self._step_error() + max(self._saves, default=0.0)
        if len(self._steps) < MIN_STEPS:
            return max(DEFAULT_MARGIN_S, evidence)
        return evidence

    def _step_error(self) -> float:
        if not self._steps:
            return 0.0
        ordered = sorted(self._steps)
        return ordered[min(len(ordered) - 1, math.ceil(QUANTILE * len(ordered)) - 1)]

    def step(self, predicted_s: float, actual_s: float) -> None:
        """A step (or an epoch's last batch and its tail) predicted to take ``predicted_s`` took
        ``actual_s``."""
        if math.isfinite(actual_s - predicted_s):
            self._steps.append(max(0.0, actual_s - predicted_s))

    def save(self, predicted_s: float, actual_s: float) -> None:
        if math.isfinite(actual_s - predicted_s):
            self._saves.append(max(0.0, actual_s - predicted_s))

    def overran(self, seconds: float) -> None:
        """The segment ended ``seconds`` after its deadline: that much more must be kept free."""
        if seconds > 0 and math.isfinite(seconds):
            self._saves.append(seconds + max(self._saves, default=0.0))

    def describe(self) -> str:
        if self.fixed_s is not None:
            return f"margin {self.fixed_s:g}s"
        if len(self._steps) < MIN_STEPS:
            return f"margin {self.seconds:.1f}s (default until {MIN_STEPS} steps were measured)"
        return f"margin {self.seconds:.1f}s (learned from {len(self._steps)} steps)"

    def history(self) -> dict[str, list[float]]:
        return {"steps": list(self._steps), "saves": list(self._saves)}


def _floats(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0]
