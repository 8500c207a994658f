"""Time-limit policies: pure functions from an aware instant to the job time limit allowed then.

The same policy object answers three questions, always from an injected ``now``:
the Slurm ``--time`` at submit time (the workflow), the in-job deadline at job start
(``now + policy(now)``), and the simulated finishing time in ``batcher status``.

>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> das5 = Das5Policy()
>>> friday_evening = datetime(2026, 11, 27, 20, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
>>> str(das5(friday_evening))  # until Monday 07:55
'2 days, 11:55:00'
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from batcher.errors import PolicyError, TimeSpecError
from batcher.timespec import parse_duration

__all__ = [
    "CallablePolicy",
    "Das5Policy",
    "FixedPolicy",
    "Policy",
    "policy_from_spec",
    "policy_to_spec",
    "window_end",
]


@runtime_checkable
class Policy(Protocol):
    """A time-limit policy: ``policy(now)`` is the time limit a job starting at ``now`` may use."""

    def __call__(self, now: datetime) -> timedelta: ...

    def next_change(self, now: datetime) -> datetime | None:
        """Return the next instant after ``now`` at which the rule changes, or None."""
        ...


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise PolicyError(
            f"policy asked about naive datetime {now.isoformat()}; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc))"
        )


def _utc(dt: datetime) -> datetime:
    # Subtracting two datetimes that share a tzinfo ignores DST; in UTC it cannot.
    return dt.astimezone(timezone.utc)


def window_end(policy: Policy, now: datetime) -> datetime:
    """Return the instant at which a job starting at ``now`` must have ended under ``policy``."""
    return _utc(now) + policy(now)


@dataclass(frozen=True)
class FixedPolicy:
    """The same limit at every hour of every day."""

    limit: timedelta

    def __post_init__(self) -> None:
        if self.limit <= timedelta(0):
            raise PolicyError(f"fixed policy limit must be positive, got {self.limit}")

    def __call__(self, now: datetime) -> timedelta:
        _require_aware(now)
        return self.limit

    def next_change(self, now: datetime) -> datetime | None:
        return None


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
        _require_aware(now)
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
        return max(_utc(end) - _utc(now), self.floor)

    def next_change(self, now: datetime) -> datetime | None:
        _require_aware(now)
        local = now.astimezone(ZoneInfo(self.tz))
        day = local.date()
        for _ in range(370):
            if self.is_working_day(day):
                for t in (self.night_end, self.work_end):
                    at = self._at(day, t)
                    if _utc(at) > _utc(now):
                        return at
            day += timedelta(days=1)
        return None


@dataclass(frozen=True)
class CallablePolicy:
    """A user's policy ``module:function``; its answers are checked before they are trusted."""

    name: str
    function: Callable[[datetime], Any]

    def __call__(self, now: datetime) -> timedelta:
        _require_aware(now)
        try:
            value = self.function(now)
        except Exception as exc:
            raise PolicyError(f"policy {self.name!r} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = timedelta(seconds=float(value))
        if not isinstance(value, timedelta) or value <= timedelta(0):
            raise PolicyError(
                f"policy {self.name!r} returned {value!r} for {now.isoformat()}; it must return "
                "a positive datetime.timedelta (or a positive number of seconds)"
            )
        return value

    def next_change(self, now: datetime) -> datetime | None:
        finder = getattr(self.function, "next_change", None)
        result = finder(now) if callable(finder) else None
        return result if isinstance(result, datetime) else None


_DAS5_KEYS = {"name", "short_limit", "margin", "work_start", "work_end", "night_end", "holidays", "tz"}


def policy_from_spec(spec: str | Mapping[str, Any] | None) -> Policy | None:
    """Return the policy that ``spec`` names, or None for ``None``/``"none"``.

    ``spec`` is ``"das5"``, ``"fixed:90s"``, ``"package.module:function"``, a JSON object text,
    or a mapping such as ``{"name": "das5", "holidays": ["2026-12-25"]}``.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PolicyError(f"policy spec {spec!r} is not valid JSON: {exc}") from None
            return policy_from_spec(loaded)
        if text in ("", "none"):
            return None
        if text == "das5":
            return Das5Policy()
        if text.startswith("fixed:"):
            return _fixed(text[len("fixed:") :], spec)
        if text == "fixed":
            raise PolicyError("policy 'fixed' needs a limit: write e.g. 'fixed:15m'")
        if ":" in text:
            return _load_callable(text)
        raise PolicyError(
            f"unknown policy {spec!r}; use 'das5', 'fixed:<duration>' (e.g. 'fixed:15m'), "
            "'none', or your own 'package.module:function'"
        )
    if isinstance(spec, Mapping):
        name = spec.get("name")
        if not isinstance(name, str):
            raise PolicyError(f"policy mapping {dict(spec)!r} needs a 'name' such as 'das5'")
        if name == "fixed":
            _only_keys(spec, {"name", "limit"}, "fixed")
            return _fixed(spec.get("limit", ""), spec)
        if name == "das5":
            _only_keys(spec, _DAS5_KEYS, "das5")
            return _das5(spec)
        if len(spec) > 1:
            raise PolicyError(f"policy {name!r} takes no options, got {sorted(set(spec) - {'name'})}")
        return policy_from_spec(name)
    raise PolicyError(f"policy spec must be a string or a mapping, got {type(spec).__name__}")


def _only_keys(spec: Mapping[str, Any], allowed: set[str], name: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise PolicyError(
            f"policy {name!r}: unknown option(s) {unknown}; allowed: {sorted(allowed - {'name'})}"
        )


def _fixed(limit: Any, spec: Any) -> FixedPolicy:
    try:
        return FixedPolicy(parse_duration(limit, what="fixed policy limit"))
    except TimeSpecError as exc:
        raise PolicyError(f"policy {spec!r}: {exc}") from None


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


def _das5(spec: Mapping[str, Any]) -> Das5Policy:
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


def _load_callable(text: str) -> CallablePolicy:
    module_name, _, attr = text.rpartition(":")
    if not module_name or not attr:
        raise PolicyError(f"policy {text!r}: write a user policy as 'package.module:function'")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # let a policy module next to the config be found
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PolicyError(
            f"policy {text!r}: cannot import module {module_name!r} ({exc}); put it on PYTHONPATH "
            "or next to config.yaml"
        ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise PolicyError(f"policy {text!r}: module {module_name!r} has no function {attr!r}")
    return CallablePolicy(text, function)


def policy_to_spec(policy: Policy | None) -> str:
    """Return a spec string that :func:`policy_from_spec` turns back into ``policy``."""
    if policy is None:
        return "none"
    if isinstance(policy, FixedPolicy):
        return f"fixed:{policy.limit.total_seconds():g}s"
    if isinstance(policy, CallablePolicy):
        return policy.name
    if isinstance(policy, Das5Policy):
        return json.dumps(
            {
                "name": "das5",
                "short_limit": f"{policy.short_limit.total_seconds():g}s",
                "margin": f"{policy.margin.total_seconds():g}s",
                "work_start": policy.work_start.isoformat(),
                "work_end": policy.work_end.isoformat(),
                "night_end": policy.night_end.isoformat(),
                "holidays": sorted(d.isoformat() for d in policy.holidays),
                "tz": policy.tz,
            }
        )
    raise PolicyError(f"cannot describe policy {policy!r} as a spec")
