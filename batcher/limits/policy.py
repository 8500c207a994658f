"""Time-limit policies: pure functions from an aware instant to the job time limit allowed then.

The same policy object answers three questions, always from an injected ``now``: the Slurm
``--time`` at submit time (the workflow), the in-job deadline at job start
(``now + policy(now)``), and the simulated finishing time in ``batcher status``. DAS-5's
etiquette is :class:`batcher.limits.das5.Das5Policy` (with an example); this module has the protocol,
the fixed and user policies, and the specs (``"das5"``, ``"fixed:15m"``, ``"pkg.mod:function"``).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from batcher.errors import PolicyError, TimeSpecError
from batcher.limits.das5 import DAS5_KEYS, Das5Policy, das5_from_spec
from batcher.limits.timespec import as_utc, parse_duration, require_aware

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


def window_end(policy: Policy, now: datetime) -> datetime:
    """Return the instant at which a job starting at ``now`` must have ended under ``policy``."""
    return as_utc(now) + policy(now)


@dataclass(frozen=True)
class FixedPolicy:
    """The same limit at every hour of every day."""

    limit: timedelta

    def __post_init__(self) -> None:
        if self.limit <= timedelta(0):
            raise PolicyError(f"fixed policy limit must be positive, got {self.limit}")

    def __call__(self, now: datetime) -> timedelta:
        require_aware(now)
        return self.limit

    def next_change(self, now: datetime) -> datetime | None:
        return None


@dataclass(frozen=True)
class CallablePolicy:
    """A user's policy ``module:function``; its answers are checked before they are trusted."""

    name: str
    function: Callable[[datetime], Any]

    def __call__(self, now: datetime) -> timedelta:
        require_aware(now)
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
            _only_keys(spec, DAS5_KEYS, "das5")
            return das5_from_spec(spec)
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
        return json.dumps(policy.spec())
    raise PolicyError(f"cannot describe policy {policy!r} as a spec")
