"""The segment's deadline: the earliest of an explicit limit, the Slurm end time and the policy window."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from batcher.job_env import JobEnv
from batcher.limits.policy import Policy, policy_from_spec, window_end
from batcher.limits.timespec import parse_deadline, parse_duration
from batcher.stopping.slurm import Runner, job_end_time, run_command

__all__ = ["Deadline", "process_start_time", "resolve_deadline"]


@dataclass(frozen=True)
class Deadline:
    """When the segment must have saved and exited (``at``), which source set it, and warnings."""

    at: datetime | None
    source: str
    candidates: dict[str, datetime] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def process_start_time(*, launched: float | None = None) -> datetime:
    """Return when this process started (Linux ``/proc``), or now where that cannot be read.

    A job's time limit counts from its start, and ``import torch`` alone can take seconds.
    ``/proc`` counts from the boot time in whole seconds, so it may read up to 1 s early;
    ``launched`` (unix s, when the job's shell started Python, ``BATCHER_LAUNCHED``) is exact:
    the later of the two is taken, both being no later than the start.
    """
    now = time.time()
    known = launched if launched is not None and now - 86400 < launched <= now else None
    started = _proc_start_time()
    if started is None and known is None:
        return datetime.fromtimestamp(now, tz=timezone.utc)
    return datetime.fromtimestamp(max(t for t in (started, known) if t is not None), tz=timezone.utc)


def _proc_start_time() -> float | None:
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        start_ticks = int(fields[19])
        with open("/proc/stat", encoding="ascii") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        started = btime + start_ticks / os.sysconf("SC_CLK_TCK")
        if abs(started - time.time()) < 86400:
            return min(started, time.time())
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return None


def resolve_deadline(
    *,
    now: datetime,
    env: Mapping[str, str],
    deadline: datetime | str | None = None,
    time_limit: timedelta | str | float | None = None,
    policy: Policy | None = None,
    started: datetime | None = None,
    slurm_run: Runner = run_command,
) -> Deadline:
    """Return the earliest deadline among the sources that apply; ``at=None`` when none does.

    Sources: ``deadline``/``time_limit`` arguments, ``BATCHER_DEADLINE`` and ``BATCHER_TIME_LIMIT``
    (counted from ``started``, the process start), the Slurm job end time, and the end of the
    policy window (``policy`` argument or ``BATCHER_POLICY``) that opened at ``started``.
    Bad values raise :class:`~batcher.errors.TimeSpecError` / :class:`~batcher.errors.PolicyError`.
    """
    started = started or now
    job = JobEnv.from_env(env)
    candidates: dict[str, datetime] = {}
    warnings: list[str] = []
    if deadline is not None:
        candidates["deadline argument"] = (
            deadline if isinstance(deadline, datetime) else parse_deadline(deadline, now=started)
        )
    if time_limit is not None:
        candidates["time_limit argument"] = started + parse_duration(time_limit, what="time_limit")
    if job.deadline:
        name = JobEnv.variable("deadline")
        candidates[name] = parse_deadline(job.deadline, now=started, what=name)
    if job.time_limit:
        name = JobEnv.variable("time_limit")
        candidates[name] = started + parse_duration(job.time_limit, what=name)
    slurm = job_end_time(env, run=slurm_run)
    if slurm is not None:
        if slurm.end is not None:
            candidates[f"Slurm end time ({slurm.source})"] = slurm.end
        else:
            warnings.append(
                f"could not read the Slurm job end time: {slurm.problem}; relying on the other "
                "limits and on Slurm's signal before the end"
            )
    if policy is None and job.policy:
        policy = policy_from_spec(job.policy)
    if policy is not None:
        candidates["policy window"] = window_end(policy, started)
    if not candidates:
        return Deadline(None, "none", {}, tuple(warnings))
    source = min(candidates, key=lambda k: candidates[k])
    return Deadline(candidates[source], source, candidates, tuple(warnings))
