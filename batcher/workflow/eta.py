"""When will a run finish? Simulate its remaining segments under the time-limit policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from batcher.errors import SlotTooShortError
from batcher.limits.policy import Policy
from batcher.limits.timespec import format_duration

__all__ = ["SegmentCost", "simulate_finish"]


@dataclass(frozen=True)
class SegmentCost:
    """What each future segment costs besides training: measured on the run's past segments."""

    overhead_s: float = 30.0  # start-up, restore, final save: the part of a slot not training
    gap_s: float = 30.0  # from one job's end to the next one's start (scheduling, queue)


def simulate_finish(
    *,
    now: datetime,
    remaining_train_s: float,
    policy: Policy | None,
    cost: SegmentCost = SegmentCost(),
    max_segments: int = 100_000,
) -> tuple[datetime, int]:
    """Return (finish time, segments needed) for ``remaining_train_s`` seconds of training.

    Each segment gets ``policy(start)``, of which ``cost.overhead_s`` is not training; segments
    follow each other after ``cost.gap_s``. Without a policy the rest runs in one segment.
    Raises :class:`SlotTooShortError` when the slots never leave time to train (a stuck run).
    """
    t = now.astimezone(timezone.utc)
    if remaining_train_s <= 0:
        return t, 0
    if policy is None:
        return t + timedelta(seconds=remaining_train_s + cost.overhead_s), 1
    left = remaining_train_s
    longest = 0.0
    for n in range(1, max_segments + 1):
        slot = policy(t).total_seconds()
        useful = max(0.0, slot - cost.overhead_s)
        longest = max(longest, slot)
        if left <= useful:
            return t + timedelta(seconds=left + cost.overhead_s), n
        left -= useful
        t += timedelta(seconds=slot + cost.gap_s)
    raise SlotTooShortError(
        f"no finish within {max_segments} segments: the longest slot the policy gives "
        f"({format_duration(longest)}) is not longer than what a segment needs besides training "
        f"({format_duration(cost.overhead_s)}: start-up, restore, one step and the final save). "
        "Give jobs more time (policy), or make a step shorter (iterate over batches)"
    )
