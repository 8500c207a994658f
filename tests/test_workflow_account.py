"""The time account of a run: each category is what the run folder and the scheduler say, the
categories of an attempt sum to its wall time, lost work is what a dead attempt trained after
its last committed checkpoint."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from batcher.run.heartbeat import Heartbeat, write_heartbeat
from batcher.run.layout import RunLayout
from batcher.run.status import SegmentSeconds, SegmentStatus, write_status
from batcher.workflow.account import CATEGORIES, SchedulerJob, account_run, sacct_jobs

T0 = 1_800_000_000.0


def _status(run: RunLayout, n: int, attempt: str, t: dict[str, float], *, steps: tuple[int, int], done: bool,
            stalls: float = 0.0, save: float = 0.0) -> None:  # fmt: skip
    write_status(
        run.status(n),
        SegmentStatus(
            status="done" if done else "unfinished", segment=n, stop_reason="finished" if done else "deadline",
            step=steps[1], steps_this_segment=steps[1] - steps[0], attempt=attempt,
            seconds=SegmentSeconds(save=save, stalls=stalls), timeline=t,
        ),
    )  # fmt: skip


def _marks(at: float) -> dict[str, float]:
    """A segment launched at ``at``: 1 s of launch before it, 4 s of imports, 1 s of restore."""
    return {"launched": at, "segment": at + 4, "training": at + 5}


def _jobs(table: dict[str, SchedulerJob]):
    seen: list[list[str]] = []

    def jobs(ids: Iterable[str]) -> dict[str, SchedulerJob]:
        seen.append(sorted(ids))
        return table

    jobs.seen = seen  # type: ignore[attr-defined]
    return jobs


def _chain(tmp_path: Path) -> RunLayout:
    """Segment 0 (job 11) queued 20 s behind another job, stopped at its deadline; segment 1's
    first job (12) SIGKILLed 30 s after its last commit; its retry (13) finished the run."""
    run = RunLayout(tmp_path / "run")
    t = {**_marks(T0 + 21), "stopping": T0 + 100, "saved": T0 + 102, "status": T0 + 102.5}
    _status(run, 0, "11", t, steps=(0, 95), done=False, stalls=1.0, save=3.0)
    write_heartbeat(
        run.heartbeat(1, "12"),
        Heartbeat(segment=1, attempt="12", time=T0 + 155, step=150, first_step=95, committed_step=120,
                  committed_at=T0 + 130, held_s=2.0, held_at_commit=1.5, timeline=_marks(T0 + 106)),
    )  # fmt: skip
    t = {**_marks(T0 + 163), "stopping": T0 + 200, "saved": T0 + 201, "status": T0 + 201.2}
    _status(run, 1, "13", t, steps=(120, 180), done=True, save=1.0)
    return run


JOBS = {
    "11": SchedulerJob("11", "COMPLETED", T0, T0 + 20, T0 + 103, 120.0, nodes=2),
    "12": SchedulerJob("12", "FAILED", T0 + 104, T0 + 105, T0 + 160, 120.0, nodes=1),  # an elastic width
    "13": SchedulerJob("13", "COMPLETED", T0 + 161, T0 + 162, T0 + 202, 120.0),
}


def test_each_category_is_what_was_arranged_and_they_sum_to_the_wall_time(tmp_path: Path) -> None:
    jobs = _jobs(JOBS)
    account = account_run(_chain(tmp_path), jobs=jobs, now=T0 + 1000)
    assert jobs.seen == [["11", "12", "13"]]  # type: ignore[attr-defined]  # one sacct call
    first, dead, last = account.attempts
    assert [(a.segment, a.attempt, a.outcome) for a in account.attempts] == [
        (0, "11", "deadline"), (1, "12", "died"), (1, "13", "finished"),
    ]  # fmt: skip
    assert first.seconds == pytest.approx(
        {
            "queued": 20,
            "launch": 1,
            "imports": 4,
            "restore": 1,
            "train": 100 - 26 - 1,
            "stalls": 1,
            "lost": 0,
            "final_save": 2.5,
            "drain": 0.5,
        }
    )
    # the dead job: committed at T0+130 (held 1.5 s by then), 0.5 s more of stalls after it, killed at T0+160
    assert dead.seconds["lost"] == pytest.approx(160 - 130 - 0.5)
    assert dead.seconds["train"] == pytest.approx(160 - 111 - 2.0 - 29.5)
    assert dead.seconds["stalls"] == 2.0 and dead.seconds["final_save"] == dead.seconds["drain"] == 0
    assert (dead.start_step, dead.end_step, dead.lost_steps) == (95, 150, 30) and dead.unplanned
    assert last.seconds["queued"] == 1 and last.seconds["final_save"] == pytest.approx(1.2)
    for a in account.attempts:
        assert sum(a.seconds[c] for c in CATEGORIES) == pytest.approx(a.wall, abs=1e-9)
        assert min(a.seconds.values()) >= 0
    assert [a.gap_s for a in account.attempts] == [1.0, 1.0, None]
    assert [a.nodes for a in account.attempts] == [2, 1, None]  # as sacct says (13: not known)
    assert account.span_s == 202 and account.totals["gap"] == 2.0
    assert account.goodput == pytest.approx(account.totals["train"] / 202)
    assert account.largest_loss == ("lost", pytest.approx(29.5))
    doc = account.as_dict()
    assert doc["largest_loss"]["category"] == "lost" and len(doc["attempts"]) == 3


def test_without_a_scheduler_the_marks_give_the_times_and_nothing_is_queued(tmp_path: Path) -> None:
    account = account_run(_chain(tmp_path), jobs=_jobs({}), now=T0 + 1000)
    first, dead, _ = account.attempts
    assert first.submit == first.start == T0 + 21 and first.end == T0 + 102.5
    assert first.seconds["queued"] == first.seconds["launch"] == first.seconds["drain"] == 0
    assert dead.end == T0 + 155  # its last sign of life: what followed is not known
    assert dead.seconds["lost"] == pytest.approx(155 - 130 - 0.5)
    for a in account.attempts:
        assert sum(a.seconds[c] for c in CATEGORIES) == pytest.approx(a.wall, abs=1e-9)


def test_a_running_attempt_counts_up_to_now_and_has_lost_nothing(tmp_path: Path) -> None:
    run = RunLayout(tmp_path / "run")
    write_heartbeat(
        run.heartbeat(0, "21"),
        Heartbeat(segment=0, attempt="21", time=T0 + 50, step=40, first_step=0, committed_step=0,
                  committed_at=T0 + 10, timeline=_marks(T0 + 5)),
    )  # fmt: skip
    running = {"21": SchedulerJob("21", "RUNNING", T0, T0 + 4, None, 900.0)}
    (a,) = account_run(run, jobs=_jobs(running), now=T0 + 60).attempts
    assert a.outcome == "running" and not a.unplanned and a.end == T0 + 60
    assert a.seconds["lost"] == 0 and a.seconds["train"] == 50 and a.lost_steps == 0


def test_a_commit_after_the_last_heartbeat_counts_the_time_after_it_as_lost(tmp_path: Path) -> None:
    run = _chain(tmp_path)
    t = {**_marks(T0 + 163), "stopping": T0 + 200, "saved": T0 + 201, "status": T0 + 201.2}
    _status(run, 1, "13", t, steps=(150, 180), done=True)  # resumed from step 150, committed after the beat
    dead = account_run(run, jobs=_jobs(JOBS), now=T0 + 1000).attempts[1]
    assert dead.lost_steps == 0 and dead.seconds["lost"] == pytest.approx(160 - 155)


def test_an_older_status_file_without_stopping_takes_its_final_save_from_the_save_seconds(
    tmp_path: Path,
) -> None:
    run = RunLayout(tmp_path / "run")
    _status(
        run, 0, "", {**_marks(T0), "saved": T0 + 50, "status": T0 + 50}, steps=(0, 9), done=True, save=2.0
    )
    (a,) = account_run(run, jobs=_jobs({}), now=T0 + 100).attempts
    assert a.seconds["final_save"] == 2.0 and a.seconds["train"] == 50 - 5 - 2.0


def test_nothing_run_yet_is_an_empty_account(tmp_path: Path) -> None:
    account = account_run(RunLayout(tmp_path / "none"), jobs=_jobs({}))
    assert account.attempts == [] and account.goodput is None and account.largest_loss is None


def _runner(stdout: str, code: int = 0):
    calls: list[dict[str, Any]] = []

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append({"argv": argv, **kw})
        return subprocess.CompletedProcess(argv, code, stdout, "")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_sacct_is_asked_for_unix_times_and_its_lines_are_read() -> None:
    run = _runner(
        "11|COMPLETED|1800000000|1800000020|1800000103|00:02:00|2\n"
        "12|CANCELLED by 0|1800000104|Unknown|Unknown|1-00:00:00|1\n"
        "13|PENDING|1800000161|Unknown|Unknown|UNLIMITED|1-2\n"
    )
    jobs = sacct_jobs(["13", "11", "pid99", "12", "11"], run=run)
    (call,) = run.calls  # type: ignore[attr-defined]
    assert call["argv"][-1] == "11,12,13" and call["env"]["SLURM_TIME_FORMAT"] == "%s"
    assert jobs["11"] == SchedulerJob("11", "COMPLETED", T0, T0 + 20, T0 + 103, 120.0, nodes=2)
    assert jobs["12"] == SchedulerJob("12", "CANCELLED", T0 + 104, None, None, 86400.0, nodes=1)
    assert jobs["13"].nodes is None  # a pending elastic job: its range, not a count yet
    assert jobs["13"].limit_s is None
    assert sacct_jobs(["11"], run=_runner("", code=1)) == {}  # no accounting: the marks are used
    assert sacct_jobs(["pid1"], run=run) == {} and len(run.calls) == 1  # type: ignore[attr-defined]


def test_a_pre_submitted_attempt_queues_from_the_previous_ones_end(tmp_path: Path) -> None:
    """#30 item 5: job 12 was submitted (held by --dependency=afterany:11) while 11 ran; its queue
    is what it waited after 11 ended, and there is no gap."""
    early = {**JOBS, "12": SchedulerJob("12", "FAILED", T0 + 50, T0 + 104.5, T0 + 160, 120.0)}
    account = account_run(_chain(tmp_path), jobs=_jobs(early), now=T0 + 1000)
    first, held, _ = account.attempts
    assert held.submit == first.end == T0 + 103 and held.seconds["queued"] == pytest.approx(1.5)
    assert first.gap_s == 0.0
    assert sum(held.seconds[c] for c in CATEGORIES) == pytest.approx(held.wall)
