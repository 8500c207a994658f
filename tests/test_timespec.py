from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from batcher.errors import TimeSpecError
from batcher.limits.timespec import format_duration, parse_deadline, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("02:00:00", 7200),
        ("1-02:00:00", 93600),
        ("00:15", 900),
        ("15 min", 900),
        (45, 45),
        (timedelta(seconds=3), 3),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "cannot read 'abc'"),
        ("15", "has no unit"),
        ("-5m", "cannot read"),
        ("0s", "not positive"),
        ("10 parsecs", "unknown unit 'parsecs'"),
        ("", "empty string"),
        ("1:75:00", ">= 60"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(TimeSpecError) as info:
        parse_duration(text, what="BATCHER_TIME_LIMIT")
    assert message in str(info.value) and str(info.value).startswith("BATCHER_TIME_LIMIT")


def test_deadlines() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert parse_deadline("15m", now=now) == now + timedelta(minutes=15)
    assert parse_deadline("2026-11-25T13:00+00:00", now=now) == now + timedelta(hours=1)
    assert parse_deadline(f"@{now.timestamp() + 5}", now=now) == now + timedelta(seconds=5)
    with pytest.raises(TimeSpecError, match="give an ISO time"):
        parse_deadline("tomorrow", now=now)


def test_format_duration() -> None:
    assert format_duration(4.25) == "4.2s"
    assert format_duration(870) == "14m 30s"
    assert format_duration(2 * 86400 + 3 * 3600 + 300) == "2d 03h 05m"
