"""Reading durations (``15m``, ``90s``, ``1h30m``, ``02:00:00``) and deadlines (ISO times)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

from batcher.errors import PolicyError, TimeSpecError

__all__ = ["format_duration", "parse_deadline", "parse_duration"]

_UNIT_S = {
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?$")
_HELP = "write it as e.g. '90s', '15m', '1h30m', '2d' or 'HH:MM:SS'"


def parse_duration(text: str | float | int | timedelta, *, what: str = "duration") -> timedelta:
    """Return the duration that ``text`` spells, e.g. ``parse_duration("15m") == timedelta(minutes=15)``.

    Accepts unit suffixes (``90s``, ``15m``, ``1h30m``, ``1.5h``, ``2d``), clock forms
    (``MM:SS`` is not accepted, ``HH:MM`` and ``HH:MM:SS`` and Slurm's ``D-HH:MM:SS`` are),
    a :class:`~datetime.timedelta`, or a number of seconds given as ``int``/``float``.
    A bare number in a *string* is refused because it is ambiguous (Slurm reads minutes).
    """
    if isinstance(text, timedelta):
        result = text
    elif isinstance(text, bool):
        raise TimeSpecError(f"{what}: {text!r} is not a duration; {_HELP}")
    elif isinstance(text, (int, float)):
        result = timedelta(seconds=float(text))
    elif isinstance(text, str):
        result = _parse_text(text, what)
    else:
        raise TimeSpecError(f"{what}: {text!r} is not a duration; {_HELP}")
    if result <= timedelta(0):
        raise TimeSpecError(f"{what}: {text!r} is not positive; {_HELP}")
    return result


def _parse_text(text: str, what: str) -> timedelta:
    s = text.strip().lower()
    if not s:
        raise TimeSpecError(f"{what}: empty string; {_HELP}")
    m = _CLOCK.match(s)
    if m:
        days, a, b, c = m.groups()
        if c is None:  # HH:MM
            hours, minutes, seconds = int(a), int(b), 0
        else:
            hours, minutes, seconds = int(a), int(b), int(c)
        if minutes >= 60 or seconds >= 60:
            raise TimeSpecError(f"{what}: {text!r} has minutes or seconds >= 60; {_HELP}")
        return timedelta(days=int(days or 0), hours=hours, minutes=minutes, seconds=seconds)
    if re.fullmatch(r"\d+(\.\d+)?", s):
        raise TimeSpecError(f"{what}: {text!r} has no unit; {_HELP}")
    pos = 0
    total = 0.0
    compact = s.replace(" ", "")
    for part in _PART.finditer(compact):
        if part.start() != pos:
            break
        unit = _UNIT_S.get(part.group(2))
        if unit is None:
            raise TimeSpecError(f"{what}: unknown unit {part.group(2)!r} in {text!r}; {_HELP}")
        total += float(part.group(1)) * unit
        pos = part.end()
    if pos != len(compact) or pos == 0:
        raise TimeSpecError(f"{what}: cannot read {text!r}; {_HELP}")
    return timedelta(seconds=total)


def parse_deadline(
    text: str, *, now: datetime, what: str = "deadline", zone: tzinfo | None = None
) -> datetime:
    """Return the aware instant that ``text`` names.

    ``text`` is an ISO 8601 time (``2026-11-27T20:00``, ``2026-11-27T20:00+01:00``; without an
    offset it is read in ``zone``, else in the machine's local time zone), ``@<unix seconds>``,
    or a duration (``15m``) counted from ``now``.
    """
    s = text.strip()
    if s.startswith("@"):
        try:
            return datetime.fromtimestamp(float(s[1:]), tz=timezone.utc)
        except (ValueError, OverflowError) as exc:
            raise TimeSpecError(f"{what}: cannot read unix time {text!r} ({exc})") from None
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        try:
            return now + parse_duration(s, what=what)
        except TimeSpecError:
            raise TimeSpecError(
                f"{what}: cannot read {text!r}; give an ISO time such as "
                f"'2026-11-27T20:00+01:00', '@<unix seconds>', or a duration such as '15m'"
            ) from None
    if when.tzinfo is None:  # naive: in ``zone``, else the machine's local time, as squeue prints it
        when = when.replace(tzinfo=zone) if zone is not None else when.astimezone()
    return when


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as a short human string, e.g. ``'2d 03h 05m'``, ``'14m 30s'``, ``'4.2s'``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def require_aware(now: datetime) -> None:
    """Refuse a naive datetime: a policy compares instants, which needs an offset."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise PolicyError(
            f"policy asked about naive datetime {now.isoformat()}; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc))"
        )


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC."""
    # Subtracting two datetimes that share a tzinfo ignores DST; in UTC it cannot.
    return dt.astimezone(timezone.utc)
