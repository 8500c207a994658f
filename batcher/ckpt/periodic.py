"""When to save while training goes on: ``save_every`` (a duration, or a number of steps).

A crash, a node failure or an ``scancel`` loses what was trained since the last committed
checkpoint. Periodic saves bound that loss to one interval, plus the step in progress, plus the
write of a save that was still in flight.

The default, 30 minutes: Young and Daly's optimal interval is sqrt(2 * C * MTBF) for a save
costing C seconds and a mean time between failures MTBF. Counting as C the whole write of a
1 GB checkpoint to a cluster file system (about 10 s at 100 MB/s; the training stall of a
background save is far less) and, as MTBF, one failure a day for a job (node failures, OOM
kills, admins' cancellations together), that is sqrt(2 * 10 * 86400) s = 22 min; 30 min, the
round number above it, keeps the expected loss under 15 min at a cost of 10 s per half hour
(0.6 %), and a 14-minute day slot never reaches it (no cost at all there, where a crash loses
less than the slot anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from batcher.errors import BatcherError
from batcher.limits.timespec import format_duration, parse_duration

__all__ = ["DEFAULT_SAVE_EVERY", "SaveEvery"]

DEFAULT_SAVE_EVERY = "30m"
_OFF = {"off", "never", "none", "no", "false"}
_STEPS = re.compile(r"^\s*(\d+)\s*(?:steps?)?\s*$", re.IGNORECASE)  # "500" too, as the int 500
_HELP = "write a duration ('30m', '90s', '2h'), a number of steps (500 or '500 steps'), or 'off'"


@dataclass(frozen=True)
class SaveEvery:
    """Save after ``seconds`` of training, or after ``steps`` steps, since the last save (or the
    segment's start); both None: never."""

    seconds: float | None = None
    steps: int | None = None

    @classmethod
    def parse(cls, value: Any, *, what: str = "save_every") -> SaveEvery:
        """Read ``"30m"``, ``timedelta``, ``500``, ``"500"`` or ``"500 steps"`` (steps), ``"off"``/``None``.

        Zero (steps or seconds) is refused: "save every 0" reads as "all the time", not as "never";
        ``"off"`` says that.
        """
        if value is None or value is False:
            return cls()
        if isinstance(value, timedelta):
            return cls(seconds=parse_duration(value, what=what).total_seconds())
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                raise BatcherError(f"{what}={value!r} is not a number of steps above 0; {_HELP}")
            return cls(steps=value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _OFF:
                return cls()
            steps = _STEPS.match(text)
            if steps:
                return cls.parse(int(steps.group(1)), what=what)
            try:
                seconds = parse_duration(text, what=what).total_seconds()
            except BatcherError as exc:
                raise BatcherError(f"{what}={value!r} cannot be read; {_HELP}") from exc
            if seconds <= 0:
                raise BatcherError(f"{what}={value!r} is no interval; {_HELP}")
            return cls(seconds=seconds)
        raise BatcherError(f"{what}={value!r} is a {type(value).__name__}; {_HELP}")

    @property
    def off(self) -> bool:
        return self.seconds is None and self.steps is None

    def due(self, *, now: float, since: float, steps_since: int) -> bool:
        """Whether a periodic save is due at a step boundary: ``since`` is when the last save
        (or the segment) began, ``steps_since`` the steps taken since."""
        if steps_since <= 0:
            return False
        if self.steps is not None:
            return steps_since >= self.steps
        return self.seconds is not None and now - since >= self.seconds

    def __str__(self) -> str:
        if self.steps is not None:
            return f"every {self.steps} steps"
        if self.seconds is not None:
            return f"every {format_duration(self.seconds)}"
        return "off"
