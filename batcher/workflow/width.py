"""Elastic width: how long a segment waits for all its nodes before it takes fewer.

An experiment with ``nodes: "1-2"`` may run each segment on one node or two. Starting on what is
free at once is not always faster: a segment on one node of two trains at half the rate for its
whole limit, and the work it did not do needs another job later. So a segment is submitted for
the full width, and the ``slurm-flat`` executor lets it start narrower (``scontrol update
NumNodes=MIN-MAX``) only after it has waited ``narrow_after`` seconds.

The default (``narrow_after: auto``) is the break-even wait, the rule of the ski-rental problem:
wait for the full width as long as narrowing would cost, then take what is free. With ``f`` the
narrow width's share of the full one (``MIN/MAX``), ``L`` the time a job trains (its limit less
the start-up and final save the run's history shows) and ``R`` the training left at full width
(from the run's progress and the seconds its segments trained, each scaled by the ranks it had),
a narrow job ends ``(1 - f) * min(R / f, L)`` later than a full-width one started at once would
have: ``(1 - f) * L`` while much is left (the work it skipped needs that long at full width later),
less for the last job (``R / f`` on the narrow width against ``R``). Waiting longer than that for
the full width costs more than starting narrow would have. In this model (a wait costs its
length, narrowing costs the delay above) the rule loses at most twice what the better choice,
made knowing the wait ahead, would have. Without history, ``R`` counts as unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from batcher.errors import BatcherError, ConfigError
from batcher.limits.timespec import parse_duration
from batcher.run.status import SegmentStatus
from batcher.workflow.backfill import needed_s
from batcher.workflow.experiments import Experiment

__all__ = ["narrow_after_s", "parse_narrow_after", "remaining_full_width_s"]

_HELP = (
    "write 'auto' (the default), a duration such as '5m' or '90s', or '0s' to start on what is free at once"
)


def narrow_after_s(
    setting: Any, exp: Experiment, limit_s: float, history: Iterable[SegmentStatus] = ()
) -> int | None:
    """Seconds a segment of ``exp`` waits for all its nodes before it may start on fewer, for the
    workflow setting ``narrow_after`` (``auto``, None, a duration, ``0s``), a job limit of
    ``limit_s`` and the run's status files; None for an experiment without an elastic width.
    Raises :class:`ConfigError` for a setting that is neither ``auto`` nor a duration."""
    chosen = parse_narrow_after(setting)
    if not exp.elastic:
        return None
    if chosen is not None:
        return chosen
    statuses = list(history)
    share = (exp.min_nodes or exp.nodes) / exp.nodes
    trains = max(0.0, limit_s - needed_s(statuses))
    left = remaining_full_width_s(statuses, exp.ranks)
    bound = trains if left is None else min(left / share, trains)
    return round((1 - share) * bound)


def remaining_full_width_s(history: Iterable[SegmentStatus], full_world: int) -> float | None:
    """Training seconds the run still needs on ``full_world`` ranks: the progress left over the
    progress its segments made per second of training, each segment's seconds scaled by its share
    of the full width (its ``world_size``). None when the history cannot say (no segment with
    progress, training seconds and world size)."""
    last, gained, seconds = 0.0, 0.0, 0.0
    for s in sorted(history, key=lambda s: s.segment):
        if s.progress is None:
            continue
        if s.world_size and s.seconds.train > 0 and s.progress > last:
            gained += s.progress - last
            seconds += s.seconds.train * s.world_size / full_world
        last = max(last, s.progress)
    if gained <= 0 or seconds <= 0:
        return None
    return max(0.0, 1.0 - last) * seconds / gained


def parse_narrow_after(setting: Any) -> int | None:
    """The workflow setting ``narrow_after`` in whole seconds, or None for ``auto`` (and unset).
    Raises :class:`ConfigError` for anything else than a duration."""
    if setting is None or str(setting).strip().lower() in ("auto", ""):
        return None
    if str(setting).strip().lower() in ("0", "0s", "now"):
        return 0
    try:
        return math.ceil(parse_duration(setting, what="narrow_after").total_seconds())
    except BatcherError as exc:
        raise ConfigError(f"config: {exc}; {_HELP}") from None
