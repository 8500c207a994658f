from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from batcher.errors import PolicyError
from batcher.limits.policy import Das5Policy, FixedPolicy, policy_from_spec, policy_to_spec

AMS = ZoneInfo("Europe/Amsterdam")
M = timedelta(minutes=1)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


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
        ("batcher.limits.policy:no_such_function", "has no function 'no_such_function'"),
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
