"""DAS-5's policy: the limit at every hour of the week, DST nights, holidays (batcher/limits/das5.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from batcher.limits.das5 import Das5Policy
from batcher.limits.policy import policy_from_spec, window_end

AMS = ZoneInfo("Europe/Amsterdam")
M = timedelta(minutes=1)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


# 2026-11-23 is a Monday; 2026-11-27 a Friday.
@pytest.mark.parametrize(
    ("now", "expected_end"),
    [
        (at(2026, 11, 27, 19, 59), None),  # Friday working hours: short
        (at(2026, 11, 27, 20, 0), at(2026, 11, 30, 7, 55)),  # Friday evening -> Monday morning
        (at(2026, 11, 27, 23, 30), at(2026, 11, 30, 7, 55)),
        (at(2026, 11, 28, 3, 0), at(2026, 11, 30, 7, 55)),  # Saturday night (seed ended it Saturday)
        (at(2026, 11, 28, 12, 0), at(2026, 11, 30, 7, 55)),  # Saturday noon
        (at(2026, 11, 29, 22, 0), at(2026, 11, 30, 7, 55)),  # Sunday evening
        (at(2026, 11, 30, 7, 54), None),  # Monday 07:54: 1 minute left -> the floor
        (at(2026, 11, 30, 7, 57), None),  # between night end and 08:00
        (at(2026, 11, 30, 6, 0), at(2026, 11, 30, 7, 55)),  # early Monday
        (at(2026, 11, 24, 20, 0), at(2026, 11, 25, 7, 55)),  # Tuesday evening -> Wednesday morning
        (at(2026, 11, 25, 12, 0), None),
    ],
)
def test_das5_limits(now: datetime, expected_end: datetime | None) -> None:
    policy = Das5Policy()
    limit = policy(now)
    if expected_end is None:
        assert limit == 14 * M
    else:
        assert window_end(policy, now) == expected_end.astimezone(timezone.utc)


def test_das5_dst_nights_are_23_and_25_hours() -> None:
    policy = Das5Policy()
    # Spring forward: Sunday 2026-03-29 02:00 -> 03:00 CEST. Saturday 20:00 -> Monday 07:55 is 1 h short.
    assert policy(at(2026, 3, 28, 20, 0)) == timedelta(hours=35, minutes=55) - timedelta(hours=1)
    # Fall back: Sunday 2026-10-25 03:00 -> 02:00 CET. Saturday 20:00 -> Monday 07:55 is 1 h longer.
    assert policy(at(2026, 10, 24, 20, 0)) == timedelta(hours=35, minutes=55) + timedelta(hours=1)
    # A weekday night over no switch: 11 h 55 min.
    assert policy(at(2026, 11, 24, 20, 0)) == timedelta(hours=11, minutes=55)
    # The same answer whatever zone the caller's clock is in.
    utc_now = at(2026, 10, 24, 20, 0).astimezone(timezone.utc)
    assert policy(utc_now) == policy(at(2026, 10, 24, 20, 0))


def test_das5_holidays_are_weekend_days() -> None:
    policy = policy_from_spec({"name": "das5", "holidays": ["2026-12-25", "2026-12-28"]})
    assert policy is not None
    # Thursday 24 Dec evening -> skips Fri 25, weekend, Mon 28 -> Tuesday 29 07:55
    assert window_end(policy, at(2026, 12, 24, 20, 0)) == at(2026, 12, 29, 7, 55).astimezone(timezone.utc)
    assert policy(at(2026, 12, 25, 12, 0)) > timedelta(days=3)


def test_das5_margin_and_short_limit_are_configurable() -> None:
    policy = policy_from_spec({"name": "das5", "short_limit": "15m", "margin": "30s"})
    assert policy is not None and policy(at(2026, 11, 25, 12, 0)) == timedelta(minutes=14, seconds=30)


def test_das5_next_change() -> None:
    policy = Das5Policy()
    assert policy.next_change(at(2026, 11, 27, 12, 0)) == at(2026, 11, 27, 20, 0)
    assert policy.next_change(at(2026, 11, 27, 20, 0)) == at(2026, 11, 30, 7, 55)
