"""Everything torch-batcher knows about Slurm, in one place: where a job's end time comes from."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from batcher.job_env import JobEnv

__all__ = [
    "SlurmEndTime",
    "SlurmWarning",
    "job_end_time",
    "parse_signal_spec",
    "run_command",
]

Runner = Callable[[list[str], float], str]


def run_command(argv: list[str], timeout_s: float) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def parse_signal_spec(spec: str, *, default_lead_s: int = 60) -> tuple[str, int]:
    """Read an sbatch ``--signal`` value (``URG@60``, ``B:USR1@90``, ``SIGURG``) as
    (``SIGURG``, 60): the signal's full name and its lead in seconds.

    Raises :class:`ValueError` for a signal this system does not have or a lead that is not a
    whole number.
    """
    name, _, lead = spec.strip().removeprefix("B:").partition("@")
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in signal.Signals.__members__:
        raise ValueError(f"no signal named {name}")
    return name, int(lead) if lead else default_lead_s


class SlurmEndTime:
    """The outcome of asking for the job's end time: ``end`` (aware) or ``problem`` (why not)."""

    __slots__ = ("end", "problem", "source")

    def __init__(self, end: datetime | None, source: str, problem: str | None = None) -> None:
        self.end = end
        self.source = source
        self.problem = problem

    def __repr__(self) -> str:
        return f"SlurmEndTime(end={self.end!r}, source={self.source!r}, problem={self.problem!r})"


def job_end_time(
    env: Mapping[str, str], *, run: Runner = run_command, timeout_s: float = 10.0
) -> SlurmEndTime | None:
    """Return the current Slurm job's end time, or None when not inside a Slurm job.

    Uses ``SLURM_JOB_END_TIME`` (Slurm >= 23.02) when set, else ``squeue -h -j ID -o %e``
    (22.05 exports no end time). A failed query gives a result with ``end=None`` and the
    reason in ``problem``, so the caller can warn and fall back on signals and the policy.
    """
    job_id = env.get("SLURM_JOB_ID")
    raw = env.get("SLURM_JOB_END_TIME")
    if raw:
        try:
            return SlurmEndTime(datetime.fromtimestamp(int(raw), tz=timezone.utc), "SLURM_JOB_END_TIME")
        except (ValueError, OverflowError):
            return SlurmEndTime(None, "SLURM_JOB_END_TIME", f"cannot read SLURM_JOB_END_TIME={raw!r}")
    if not job_id:
        return None
    argv = ["squeue", "-h", "-j", job_id, "-o", "%e"]
    try:
        out = run(argv, timeout_s).strip()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return SlurmEndTime(None, "squeue", f"{' '.join(argv)} failed: {exc}")
    if out in ("", "N/A", "NONE", "Unknown", "INVALID"):
        return SlurmEndTime(None, "squeue", f"squeue gave no end time for job {job_id} ({out!r})")
    try:
        end = datetime.fromisoformat(out.splitlines()[0].strip())
    except ValueError:
        return SlurmEndTime(None, "squeue", f"cannot read squeue end time {out!r}")
    if end.tzinfo is None:
        end = end.astimezone()  # squeue prints the cluster's local wall-clock time
    return SlurmEndTime(end, "squeue")


class SlurmWarning:
    """Tells Slurm's own ``--signal`` warning apart from a stop request sent by a person.

    Slurm sends ``--signal=SIG@LEAD`` between LEAD and LEAD + ~30 s (its check cycle) before the
    job's end. The predictive stop already ends the segment ``margin_s`` before that end, so
    stopping at the warning would waste up to LEAD + 30 s of every slot. A signal arriving in that
    window, when the (re-read) end time is known, only confirms the deadline; one arriving earlier,
    e.g. ``scancel --signal=URG``, is a request to stop now.
    """

    #: slurmctld sends the warning once end - now <= lead + PERIODIC_TIMEOUT (30 s), checked
    #: about every 30 s; plus a little slack for delivery through the job step
    EARLY_S = 35.0

    def __init__(
        self, signal_name: str, lead_s: float, env: Mapping[str, str], run: Runner = run_command
    ) -> None:
        self.signal = signal_name
        self.lead_s = lead_s
        self._env = env
        self._run = run

    @classmethod
    def from_env(cls, env: Mapping[str, str], run: Runner = run_command) -> SlurmWarning | None:
        """Read ``BATCHER_SLURM_SIGNAL`` (the sbatch ``--signal`` value, e.g. ``URG@60``) in a Slurm job."""
        spec = JobEnv.from_env(env).slurm_signal or ""
        if not spec or not env.get("SLURM_JOB_ID"):
            return None
        try:
            name, lead_s = parse_signal_spec(spec)
        except ValueError:
            return None
        return cls(name, float(lead_s), env, run)

    def is_warning(self, signal_name: str, now: datetime) -> tuple[bool, datetime | None]:
        """Return (True, end) when ``signal_name`` is Slurm's warning for a known end, else (False, end)."""
        if signal_name != self.signal:
            return False, None
        found = job_end_time(self._env, run=self._run)
        end = found.end if found is not None else None
        if end is None:
            return False, None
        return (end - now).total_seconds() <= self.lead_s + self.EARLY_S, end
