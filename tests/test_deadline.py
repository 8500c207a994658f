from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from batcher.errors import PolicyError
from batcher.limits.policy import FixedPolicy
from batcher.stopping.deadline import process_start_time, resolve_deadline
from batcher.stopping.slurm import job_end_time

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _squeue(out: str):
    def run(argv: list[str], timeout_s: float) -> str:
        assert argv == ["squeue", "-h", "-j", "42", "-o", "%e"]
        return out

    return run


def _failing(argv: list[str], timeout_s: float) -> str:
    raise RuntimeError("squeue exited 1: slurm_load_jobs error: Unable to contact slurm controller")


def test_no_source_means_no_deadline() -> None:
    d = resolve_deadline(now=NOW, env={})
    assert d.at is None


def test_earliest_source_wins() -> None:
    env = {"BATCHER_TIME_LIMIT": "30m", "SLURM_JOB_ID": "42", "BATCHER_POLICY": "fixed:20m"}
    d = resolve_deadline(now=NOW, env=env, slurm_run=_squeue("2026-11-25T12:25:00+00:00\n"))
    assert d.source == "policy window" and d.at == NOW + timedelta(minutes=20)
    d = resolve_deadline(now=NOW, env=env, time_limit="10m", slurm_run=_squeue("2026-11-25T12:25:00+00:00"))
    assert d.source == "time_limit argument"
    d = resolve_deadline(
        now=NOW,
        env=env,
        policy=FixedPolicy(timedelta(hours=1)),
        slurm_run=_squeue("2026-11-25T12:25:00+00:00"),
    )
    assert d.source == "Slurm end time (squeue)" and d.at == NOW + timedelta(minutes=25)


def test_slurm_end_time_env_is_preferred() -> None:
    end = NOW + timedelta(minutes=7)
    r = job_end_time({"SLURM_JOB_ID": "42", "SLURM_JOB_END_TIME": str(int(end.timestamp()))}, run=_failing)
    assert r is not None and r.end == end and r.source == "SLURM_JOB_END_TIME"


def test_squeue_failure_is_a_warning_not_a_crash() -> None:
    d = resolve_deadline(now=NOW, env={"SLURM_JOB_ID": "42", "BATCHER_TIME_LIMIT": "5m"}, slurm_run=_failing)
    assert d.source == "BATCHER_TIME_LIMIT"
    assert "could not read the Slurm job end time" in d.warnings[0] and "Unable to contact" in d.warnings[0]


def test_unlimited_job() -> None:
    r = job_end_time({"SLURM_JOB_ID": "42"}, run=_squeue("N/A\n"))
    assert r is not None and r.end is None and "no end time" in (r.problem or "")


def test_limits_count_from_process_start() -> None:
    started = NOW - timedelta(seconds=4)
    d = resolve_deadline(now=NOW, env={"BATCHER_TIME_LIMIT": "1m"}, started=started)
    assert d.at == started + timedelta(minutes=1)


def test_bad_policy_env() -> None:
    with pytest.raises(PolicyError, match="unknown policy 'sometimes'"):
        resolve_deadline(now=NOW, env={"BATCHER_POLICY": "sometimes"})


def test_the_process_start_takes_the_exact_launch_time_when_it_is_later() -> None:
    """/proc counts from a boot time in whole seconds (up to 1 s early); BATCHER_LAUNCHED, written
    by the job's shell just before Python, is exact: the later of the two lower bounds is the start
    (#31: with no Snakemake in the job, the policy window from /proc ended 1 s before Slurm's end)."""
    proc = process_start_time().timestamp()
    now = time.time()
    assert proc <= now
    halfway = proc + (now - proc) / 2
    assert process_start_time(launched=halfway).timestamp() == pytest.approx(halfway)
    assert process_start_time(launched=proc - 10).timestamp() == pytest.approx(proc)
    assert process_start_time(launched=now + 100).timestamp() == pytest.approx(proc)  # not yet: ignored
