"""``--time-min``: how short a segment's job may be, so that Slurm's backfill scheduler can start
it early in a hole shorter than the policy's limit.

A segment asks for the policy's limit (``--time``). With the workflow setting ``min_time`` it
also gives Slurm a minimum (``--time-min``): the backfill scheduler may then start it at once
with any limit between the two that fits before the next reserved job, instead of leaving it
queued behind every job ahead. The segment reads its real end time from Slurm when it starts
and stops before it (:mod:`batcher.stopping.slurm`), whatever limit it got.

The minimum is never below what one job needs to make progress, from the run's own history
(its status files): the slowest start-up seen (job start -> training), two of the slowest
median steps, the slowest final save, and the stop margin a run starts with. A job shorter than
that would only stop with ``SlotTooShortError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from batcher.errors import BatcherError, ConfigError
from batcher.limits.timespec import parse_duration
from batcher.run.status import SegmentStatus
from batcher.stopping.margin import DEFAULT_MARGIN_S

__all__ = ["needed_s", "time_min_minutes"]

_HELP = "write a duration such as '5m' or '90s', or 'off'"


def needed_s(history: Iterable[SegmentStatus]) -> float:
    """Seconds one job needs at the least to train a step, from the run's status files (0
    without history): start-up, two steps, the final save, the starting margin."""
    startup = step = save = 0.0
    seen = False
    for s in history:
        t = s.timeline
        if "training" in t:
            seen = True
            startup = max(startup, t["training"] - t.get("launched", t.get("segment", t["training"])))
        if s.step_s_median:
            step = max(step, s.step_s_median)
        save = max(save, s.seconds.save - s.seconds.stalls)
    return startup + 2 * step + save + DEFAULT_MARGIN_S if seen else 0.0


def time_min_minutes(setting: Any, minutes: int, history: Iterable[SegmentStatus] = ()) -> int | None:
    """``--time-min`` in whole minutes for a job of ``minutes``, or None (no minimum: the setting
    is unset or ``off``, or the minimum is not below the limit). Raises :class:`ConfigError` for a
    ``min_time`` that is no duration."""
    if setting is None or str(setting).strip().lower() in ("off", "none", "no", "false", ""):
        return None
    try:
        wanted = parse_duration(setting, what="min_time").total_seconds()
    except BatcherError as exc:
        raise ConfigError(f"config: {exc}; {_HELP}") from None
    if wanted <= 0:
        raise ConfigError(f"config: min_time={setting!r} is no minimum; {_HELP}")
    floor = max(wanted, needed_s(history))
    result = max(1, math.ceil(floor / 60))
    return result if result < minutes else None
