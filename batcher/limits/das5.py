"""DAS-5's time-limit policy: short jobs in working hours, long jobs at night and over weekends.

>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> das5 = Das5Policy()
>>> friday_evening = datetime(2026, 11, 27, 20, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
>>> str(das5(friday_evening))  # until Monday 07:55
'2 days, 11:55:00'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from batcher.errors import PolicyError, TimeSpecError
from batcher.limits.timespec import as_utc, parse_duration, require_aware

__all__ = ["DAS5_KEYS", "Das5Policy", "das5_from_spec"]

#: the options of a ``{name: das5, ...}`` policy spec
DAS5_KEYS = {"name", "short_limit", "margin", "work_start", "work_end", "night_end", "holidays", "tz"}


@dataclass(frozen=True)
class Das5Policy:
    """DAS-5's etiquette: short jobs in working hours, long jobs at night and over weekends.

    - working day 08:00-20:00: ``short_limit - margin`` (15 min - 1 min);
    - working day before ``night_end`` (07:55): until ``night_end`` that day;
    - working day from 20:00, weekends and holidays: until ``night_end`` on the next working day
      (Friday 20:00 -> Monday 07:55);
    - never less than ``short_limit - margin`` (a job at 07:50 gets the short limit, not 5 minutes).

    Times are wall-clock times in ``tz``; nights across a DST switch are 23 or 25 hours long.
    """

    short_limit: timedelta = timedelta(minutes=15)
    margin: timedelta = timedelta(minutes=1)
    work_start: time = time(8, 0)
    work_end: time = time(20, 0)
    night_end: time = time(7, 55)
    holidays: frozenset[date] = field(default_factory=frozenset)
    tz: str = "Europe/Amsterdam"

    def __post_init__(self) -> None:
        if self.floor <= timedelta(0):
            raise PolicyError(
                f"das5 policy: short_limit {self.short_limit} minus margin {self.margin} must be positive"
            )
        if not (self.night_end <= self.work_start < self.work_end):
            raise PolicyError(
                "das5 policy: need night_end <= work_start < work_end, got "
                f"{self.night_end}, {self.work_start}, {self.work_end}"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError(
                f"das5 policy: unknown time zone {self.tz!r}; use an IANA name such as "
                "'Europe/Amsterdam' (Debian: apt-get install tzdata)"
            ) from None

    @property
    def floor(self) -> timedelta:
        """The shortest limit this policy ever gives (the working-hours limit)."""
        return self.short_limit - self.margin

    def is_working_day(self, day: date) -> bool:
        """Return True when ``day`` is a weekday that is not a configured holiday."""
        return day.weekday() < 5 and day not in self.holidays

    def _next_working_day(self, day: date) -> date:
        day += timedelta(days=1)
        for _ in range(366):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise PolicyError("das5 policy: no working day within a year; check the holiday list")

    def _at(self, day: date, t: time) -> datetime:
        return datetime.combine(day, t, tzinfo=ZoneInfo(self.tz))

    def __call__(self, now: datetime) -> timedelta:
        require_aware(now)
        local = now.astimezone(ZoneInfo(self.tz))
        day, t = local.date(), local.time()
        if self.is_working_day(day):
            if t < self.night_end:
                end = self._at(day, self.night_end)
            elif t < self.work_end:
                return self.floor
            else:
                end = self._at(self._next_working_day(day), self.night_end)
        else:
            end = self._at(self._next_working_day(day), self.night_end)
        return max(as_utc(end) - as_utc(now), self.floor)

    def next_change(self, now: datetime) -> datetime | None:
        require_aware(now)
        local = now.astimezone(ZoneInfo(self.tz))
        day = local.date()
        for _ in range(370):
            if self.is_working_day(day):
                for t in (self.night_end, self.work_end):
                    at = self._at(day, t)
                    if as_utc(at) > as_utc(now):
                        return at
            day += timedelta(days=1)
        return None

    def spec(self) -> dict[str, Any]:
        """The mapping :func:`das5_from_spec` turns back into this policy."""
        return {
            "name": "das5",
            "short_limit": f"{self.short_limit.total_seconds():g}s",
            "margin": f"{self.margin.total_seconds():g}s",
            "work_start": self.work_start.isoformat(),
            "work_end": self.work_end.isoformat(),
            "night_end": self.night_end.isoformat(),
            "holidays": sorted(d.isoformat() for d in self.holidays),
            "tz": self.tz,
        }


def _clock(value: Any, key: str) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise PolicyError(f"das5 policy: {key}={value!r} is not a time of day like '07:55'") from None


def _dates(values: Iterable[Any]) -> frozenset[date]:
    out = set()
    for v in values:
        if isinstance(v, datetime):
            out.add(v.date())
        elif isinstance(v, date):
            out.add(v)
        else:
            try:
                out.add(date.fromisoformat(str(v)))
            except ValueError:
                raise PolicyError(f"das5 policy: holiday {v!r} is not a date like '2026-12-25'") from None
    return frozenset(out)


def das5_from_spec(spec: Mapping[str, Any]) -> Das5Policy:
    """The policy a ``{name: das5, holidays: [...], ...}`` mapping describes."""
    kwargs: dict[str, Any] = {}
    try:
        for key in ("short_limit", "margin"):
            if key in spec:
                kwargs[key] = parse_duration(spec[key], what=f"das5 policy {key}")
    except TimeSpecError as exc:
        raise PolicyError(str(exc)) from None
    for key in ("work_start", "work_end", "night_end"):
        if key in spec:
            kwargs[key] = _clock(spec[key], key)
    if "holidays" in spec:
        holidays = spec["holidays"]
        if isinstance(holidays, (str, bytes)) or not isinstance(holidays, Iterable):
            raise PolicyError("das5 policy: holidays must be a list of dates like ['2026-12-25']")
        kwargs["holidays"] = _dates(holidays)
    if "tz" in spec:
        kwargs["tz"] = str(spec["tz"])
    return Das5Policy(**kwargs)
