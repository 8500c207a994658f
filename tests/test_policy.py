from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from batcher.errors import PolicyError
from batcher.policy import Das5Policy, FixedPolicy, policy_from_spec, policy_to_spec, window_end

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


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(PolicyError, match="naive datetime"):
        Das5Policy()(datetime(2026, 11, 27, 12, 0))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("das5", Das5Policy()),
        ("fixed:90s", FixedPolicy(timedelta(seconds=90))),
        ({"name": "fixed", "limit": "2m"}, FixedPolicy(timedelta(minutes=2))),
        ('{"name": "fixed", "limit": "1h"}', FixedPolicy(timedelta(hours=1))),
        ("none", None),
        (None, None),
    ],
)
def test_specs(spec: object, expected: object) -> None:
    assert policy_from_spec(spec) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("weekly", "unknown policy 'weekly'; use 'das5', 'fixed:<duration>'"),
        ("fixed", "policy 'fixed' needs a limit"),
        ("fixed:abc", "cannot read 'abc'"),
        ("fixed:10", "has no unit"),
        ({"name": "das5", "holiday": []}, "unknown option(s) ['holiday']"),
        ({"name": "das5", "holidays": ["xmas"]}, "holiday 'xmas' is not a date"),
        ({"name": "das5", "tz": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("batcher.policy:no_such_function", "has no function 'no_such_function'"),
    ],
)
def test_bad_specs(spec: object, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_spec(spec)  # type: ignore[arg-type]
    assert message in str(info.value)


def _nonsense(now: datetime) -> object:
    return "forever"


def _minutes(now: datetime) -> timedelta:
    return timedelta(minutes=5)


def test_user_policy_is_loaded_and_checked() -> None:
    good = policy_from_spec(f"{__name__}:_minutes")
    assert good is not None and good(at(2026, 1, 1, 0, 0)) == timedelta(minutes=5)
    bad = policy_from_spec(f"{__name__}:_nonsense")
    assert bad is not None
    with pytest.raises(PolicyError, match=r"returned 'forever'.*positive datetime\.timedelta"):
        bad(at(2026, 1, 1, 0, 0))


def test_spec_round_trip() -> None:
    for policy in (Das5Policy(holidays=frozenset({datetime(2026, 12, 25).date()})), FixedPolicy(M)):
        assert policy_from_spec(policy_to_spec(policy)) == policy
