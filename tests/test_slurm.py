"""What the library reads from Slurm: the job's end time and the --signal spec."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from batcher.stopping.slurm import job_end_time, parse_signal_spec


def test_signal_specs() -> None:
    assert parse_signal_spec("URG@60") == ("SIGURG", 60)
    assert parse_signal_spec("B:usr1@90") == ("SIGUSR1", 90)
    assert parse_signal_spec("SIGTERM") == ("SIGTERM", 60)
    with pytest.raises(ValueError):
        parse_signal_spec("URG@soon")


def test_end_time_from_the_environment_then_squeue() -> None:
    assert job_end_time({}) is None  # not in a Slurm job
    found = job_end_time({"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": "1800000000"})
    assert found is not None and found.end == datetime.fromtimestamp(1800000000, tz=timezone.utc)
    asked: list[list[str]] = []

    def squeue(argv: list[str], timeout_s: float) -> str:
        asked.append(argv)
        return "2026-11-25T12:25:00\n"

    found = job_end_time({"SLURM_JOB_ID": "7"}, run=squeue)
    assert asked == [["squeue", "-h", "-j", "7", "-o", "%e"]]
    assert found is not None and found.end is not None and found.end.tzinfo is not None


def test_a_failed_query_is_a_problem_not_a_crash() -> None:
    def broken(argv: list[str], timeout_s: float) -> str:
        raise RuntimeError("slurm_load_jobs error: Socket timed out")

    found = job_end_time({"SLURM_JOB_ID": "7"}, run=broken)
    assert found is not None and found.end is None and "Socket timed out" in (found.problem or "")
    unlimited = job_end_time({"SLURM_JOB_ID": "7"}, run=lambda argv, t: "Unknown")
    assert unlimited is not None and unlimited.end is None
