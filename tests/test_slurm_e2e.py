"""End to end on a real one-node Slurm cluster (tests/slurm/cluster.sh up), through profiles/das5.

Only the policy (a 1- or 2-minute fixed policy, or das5 with a pinned clock) and the stop signal's
lead are overridden; partition `defq` matches the test cluster's.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import torch
from conftest import python_env
from helpers import (
    TRAIN_FULL,
    run_segment,
    sleep_per_step,
    slurm_jobs,
    workflow_copy,
)

import batcher
from batcher.run.layout import RunLayout
from batcher.workflow.account import account_run, sacct_jobs

pytestmark = pytest.mark.slurm


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    try:
        _sh("scontrol", "ping")
        _sh("sacct", "-n", "-X", "-S", "now-1minute")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(
            f"no Slurm cluster reachable ({exc}); start one with `bash tests/slurm/cluster.sh up` "
            "(root), or deselect these tests with -m 'not slurm'"
        )


def _snakemake_argv(*config: str, options: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--profile", "profiles/das5", *options, "--config", *config]


def _run_workflow(
    workdir: Path, *config: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = _snakemake_argv(*config, options=options)
    return subprocess.run(argv, cwd=workdir, env=python_env(), capture_output=True, text=True, timeout=900)


def _sacct(job_ids: list[str] | None = None) -> list[dict[str, str]]:
    argv = ["sacct", "-n", "-X", "-P", "-o", "JobID,JobName,State,Timelimit,Start,End", "-S", "now-2hours"]
    if job_ids:
        argv += ["-j", ",".join(job_ids)]
    keys = ["id", "name", "state", "limit", "start", "end"]
    return [dict(zip(keys, line.split("|"), strict=False)) for line in _sh(*argv).splitlines() if line]


def _running_jobs() -> list[str]:
    return _sh("squeue", "-h", "-t", "RUNNING", "-o", "%i").split()


def _wait(what: str, predicate: Callable[[], object], timeout_s: float = 240) -> object:
    end = time.time() + timeout_s
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _kill_training(workdir: Path) -> None:
    """SIGKILL the training processes of the workflow in ``workdir``, only those: other tests'
    train_full.py segments may run beside these (tests/run.sh)."""
    pids = subprocess.run(["pgrep", "-f", "scripts/train_full.py"], capture_output=True, text=True).stdout
    killed = 0
    for pid in map(int, pids.split()):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(workdir):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        except (FileNotFoundError, ProcessLookupError):
            continue
    assert killed, "no training process of this workflow found to kill"


def _metric_rows(workdir: Path, exp: str) -> int:
    files = list((workdir / "runs" / exp).glob("*/metrics.jsonl"))
    return len(files[0].read_text().splitlines()) if files else 0


def _statuses(workdir: Path, exp: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "runs" / exp).glob("*/status/seg-*.json"))]


def _chain_story(workdir: Path, statuses: list[dict], jobs: list[dict[str, str]]) -> str:
    """What a chain did, for a failure message: each segment's status, each Slurm job (requeues
    included) and Snakemake's error lines."""
    seg = [
        {k: s.get(k) for k in ("segment", "status", "stop_reason", "step", "attempt", "ended", "deadline",
                               "deadline_source")}
        for s in statuses
    ]  # fmt: skip
    every = _sh("sacct", "-n", "-X", "-D", "-P", "-S", "now-2hours", "-o", "JobID,State,Start,End,WorkDir")
    mine = [line for line in every.splitlines() if line.endswith(str(workdir.resolve()))]
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    errors = [
        line for log in logs for line in log.read_text().splitlines()
        if any(w in line for w in ("Error", "error", "failed", "Trying to restart", "Job "))
    ]  # fmt: skip
    return f"statuses: {seg}\njobs: {jobs}\nsacct -D: {mine}\nsnakemake: {errors[-40:]}"


def _uninterrupted(tmp_path: Path, epochs: int) -> tuple[dict, list[float]]:
    done = run_segment(TRAIN_FULL, ["--epochs", str(epochs)], tmp_path / "whole")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    return batcher.load_checkpoint(tmp_path / "whole")["objects"]["model"], [r["loss"] for r in rows]


def _assert_matches(workdir: Path, exp: str, model: dict, losses: list[float]) -> None:
    final = torch.load(workdir / "results" / exp / "final.pt", weights_only=True)["objects"]["model"]
    assert all(torch.equal(model[k], final[k]) for k in model)
    (metrics,) = (workdir / "runs" / exp).glob("*/metrics.jsonl")
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["_seq"] for r in rows] == list(range(len(rows)))
    assert [r["loss"] for r in rows] == losses


def test_chain_completes_through_slurm_jobs_and_equals_uninterrupted(tmp_path: Path) -> None:
    sleep = sleep_per_step(segments=3, budget_s=60, steps=96)  # 6 epochs of 16 steps in 60 s jobs
    exp = {"a": {"script": "scripts/train_full.py", "args": {"step-sleep": sleep}, "length": 6}}
    workdir = workflow_copy(tmp_path / "wf", exp)
    keep_logs = ("--slurm-flat-keep-successful-logs",)
    out = _run_workflow(workdir, "policy=fixed:60s", "margin_s=5", "stop_signal=URG@1", options=keep_logs)
    assert out.returncode == 0, out.stderr[-4000:]
    statuses = _statuses(workdir, "a")
    jobs = slurm_jobs(workdir, {"id": "JobID", "state": "State", "limit": "Timelimit"})
    story = _chain_story(workdir, statuses, jobs)
    assert len(statuses) >= 3, story
    assert len(jobs) >= 3 and {j["state"] for j in jobs} == {"COMPLETED"}, story
    assert all(j["limit"] == "00:01:00" for j in jobs)
    successors = workdir / ".snakemake" / "slurm-flat" / "successors"
    for before, job in zip([None, *jobs], jobs, strict=False):
        # slurm-flat: the job runs the rule's command itself, no Snakemake in it (#31), and the
        # training is the job step that the stop signal reaches. profiles/das5 pre-submits: each
        # job after the first is the successor of the one before, which logs apart
        logs = [*(workdir / ".snakemake" / "slurm_logs").rglob(f"{job['id']}.log")]
        (log,) = logs or [successors / f"after-{before['id']}.log"]  # type: ignore[index]
        assert "Building DAG of jobs" not in log.read_text(), log.read_text()[-3000:]
        steps = _sh("sacct", "-n", "-P", "-j", job["id"], "-o", "JobID,JobName").split()
        assert f"{job['id']}.0|python" in steps, steps
    for s in statuses[:-1]:
        # the library read the real end time from squeue and stopped with its margin to spare
        assert s["deadline_source"] == "Slurm end time (squeue)", s
        ended, deadline = datetime.fromisoformat(s["ended"]), datetime.fromisoformat(s["deadline"])
        assert 0 < (deadline - ended).total_seconds() <= 5 + 8, s
    model, losses = _uninterrupted(tmp_path, 6)
    _assert_matches(workdir, "a", model, losses)


def test_signal_kill_and_head_node_restart(tmp_path: Path) -> None:
    # 2-minute jobs: a signal sent 10 s into a job is far outside the window in which Slurm's own
    # warning can arrive (lead + 35 s before the end), so the library takes it as a stop request.
    # 224 steps of 0.6 s: segment 0 is stopped early and segment 1's first job killed, so the retry
    # (one 120 s job, less than 134 s of steps) cannot finish and segment 2 must follow.
    # Another user's job holds the node at first, so segment 0 waits in the queue (#29's account).
    exp = {"a": {"script": "scripts/train_full.py", "args": {"step-sleep": 0.6}, "length": 14}}
    workdir = workflow_copy(tmp_path / "wf", exp)
    argv = _snakemake_argv(
        "policy=fixed:120s", "margin_s=5", "stop_signal=URG@1", f"save_every={SAVE_EVERY_S}s"
    )
    blocker = _sh("sbatch", "--parsable", "-p", "defq", "--exclusive", "--mem=100", "-J", "other-user",
                  "-o", "/dev/null", "--wrap", f"sleep {BLOCKER_S}").strip()  # fmt: skip
    _wait("the other job to run", lambda: blocker in _running_jobs(), 60)
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(argv, cwd=workdir, env=python_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        # 1. the profile's signal, sent early, makes a clean save: job COMPLETED, status "signal SIGURG"
        (job0,) = _wait("segment 0 to run", lambda: [j for j in _running_jobs() if j != blocker])  # type: ignore[misc]
        _wait("training to start", lambda: _metric_rows(workdir, "a") >= 3)
        _sh("scancel", "--signal=URG", job0)
        seg0 = Path(
            _wait(
                "segment 0 status",
                lambda: next((workdir / "runs" / "a").glob("*/status/seg-0000.json"), None),
            )
        )  # type: ignore[arg-type]
        seg0_text = seg0.read_text()  # a rerun would rewrite it with other times and steps
        assert json.loads(seg0_text)["stop_reason"] == "signal SIGURG"
        _wait("job 0 accounted COMPLETED", lambda: _sacct([job0])[0]["state"] == "COMPLETED", 60)

        # 2. a job whose training process is SIGKILLed mid-step (OOM killer, node trouble) is
        #    retried and resumes from the last good checkpoint
        (job1,) = _wait("segment 1 to run", lambda: [j for j in _running_jobs() if j != job0])  # type: ignore[misc]
        rows = _metric_rows(workdir, "a")
        # past its first periodic save (every SAVE_EVERY_S s of training), then killed
        _wait("segment 1 to train", lambda: _metric_rows(workdir, "a") >= rows + 3 + SAVE_EVERY_S / 0.6)
        _kill_training(workdir)
        (job1b,) = _wait("the retry", lambda: [j for j in _running_jobs() if j not in (job0, job1)])  # type: ignore[misc]
        assert _sacct([job1])[0]["state"] == "FAILED", _sacct([job1])
        # with presubmit, job1b is job1's successor: it starts as job1 ends and waits for the retry
        _wait(
            "the retry to start in it",
            lambda: [*(workdir / "runs" / "a").glob(f"*/heartbeat/seg-0001-{job1b}.json")],
        )
        _wait(
            "the retry to resume",  # its log replaces the killed attempt's
            lambda: (
                "resumed from checkpoint"
                in next((workdir / "runs" / "a").glob("*/logs/seg-0001.log")).read_text()
            ),
        )

        # 3. the head-node snakemake dies mid-chain; the running job carries on
        head.send_signal(signal.SIGKILL)
        head.wait(30)
        _wait("the orphaned job to end", lambda: job1b not in _running_jobs(), 120)
    finally:
        if head.poll() is None:
            head.kill()
        log.close()
    subprocess.run([*argv, "--unlock"], cwd=workdir, env=python_env(), check=True, capture_output=True)
    out = subprocess.run(argv, cwd=workdir, env=python_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    # profiles/das5 pre-submits: the killed head's last successor is cancelled by the new one
    assert "cancelled 1 pre-submitted SLURM job(s) that an earlier run" in out.stderr, out.stderr[-4000:]
    assert seg0.read_text() == seg0_text, "a finished segment ran again"
    statuses = _statuses(workdir, "a")
    assert len(statuses) >= 3 and statuses[-1]["segment"] >= 2, "the restart did not continue the chain"
    model, losses = _uninterrupted(tmp_path, 14)
    _assert_matches(workdir, "a", model, losses)
    _assert_the_time_account(workdir, blocker, job0, job1)


SAVE_EVERY_S = 3
BLOCKER_S = 25


def _assert_the_time_account(workdir: Path, blocker: str, job0: str, job1: str) -> None:
    """#29: the account of the chain above says what the test arranged: the queue wait behind the
    other job, the planned stop, the kill and the work it lost, every second of every job."""
    jobs = {j["id"]: j for j in slurm_jobs(workdir, {"id": "JobID", "submit": "Submit", "end": "End"})}
    accounting = sacct_jobs([blocker, *jobs])
    (run_dir,) = (workdir / "runs" / "a").iterdir()
    account = account_run(RunLayout(run_dir))
    attempts = {a.attempt: a for a in account.attempts}
    assert set(attempts) == set(jobs), (attempts, jobs)  # every job, the killed one too
    first, killed = attempts[job0], attempts[job1]
    # queued behind the other job: until it ended (its length, less the time snakemake took to submit)
    waited = accounting[blocker].end - accounting[job0].submit  # type: ignore[operator]
    assert waited > 10 and abs(first.seconds["queued"] - waited) <= 2.0, (first, accounting[blocker])
    assert first.outcome == "signal SIGURG" and first.seconds["lost"] == 0
    # the kill: lost at most one save interval, one step and sacct's whole second
    assert killed.outcome == "died" and killed.unplanned
    assert 0 < killed.seconds["lost"] <= SAVE_EVERY_S + 0.6 + 1.0, killed
    assert killed.lost_steps <= SAVE_EVERY_S / 0.6 + 2, killed
    for a in account.attempts:
        # the categories sum to the job's time as Slurm accounts it (whole seconds)
        job = accounting[a.attempt]
        # a pre-submitted job's queue counts from the previous job's end, not from its submission
        assert a.submit >= job.submit - 1.0, (a, job)  # type: ignore[operator]
        sacct_wall = job.end - max(job.submit, a.submit)  # type: ignore[operator,type-var]
        assert sum(a.seconds.values()) == pytest.approx(a.wall, rel=1e-9)
        assert abs(a.wall - sacct_wall) <= max(0.005 * sacct_wall, 1.0), (a, job)
        assert min(a.seconds.values()) >= 0, a
        assert a.seconds["train"] > 0, a
    assert 0 < account.goodput < 1  # type: ignore[operator]
    assert (workdir / "results" / "a" / "timeline.png").stat().st_size > 5000


@pytest.mark.parametrize(
    ("pinned", "limit"),
    [
        ("2026-11-25T10:00:00+01:00", "14:00"),  # Wednesday working hours: 15 min minus 1 min margin
        ("2026-11-27T20:00:00+01:00", "2-11:55:00"),
    ],  # Friday evening: until Monday 07:55
)
def test_submitted_time_limit_is_the_policy_at_submit_time(tmp_path: Path, pinned: str, limit: str) -> None:
    exp = {"a": {"script": "scripts/train_full.py", "args": {"step-sleep": 1.0}, "length": 100}}
    workdir = workflow_copy(tmp_path / "wf", exp)
    before = set(_sh("squeue", "-h", "-o", "%i").split())
    head = subprocess.Popen(
        _snakemake_argv("policy=das5", f"policy_now={pinned}"),
        cwd=workdir,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = _wait(
            "the submission",
            lambda: [
                row for row in _sh("squeue", "-h", "-o", "%i %l").splitlines() if row.split()[0] not in before
            ],
            120,
        )
        _job, got = line[0].split()  # type: ignore[index]
        assert got == limit
    finally:
        head.send_signal(signal.SIGINT)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
        for j in set(_sh("squeue", "-h", "-o", "%i").split()) - before:
            _sh("scancel", j)
    assert os.path.exists(workdir)


def test_a_segment_backfilled_with_a_shorter_limit_saves_before_it(tmp_path: Path) -> None:
    """#30 item 2: with min_time, Slurm's backfill starts a segment in a hole shorter than the
    policy's limit (before a reserved job) instead of queueing it; the segment reads the end it
    got and stops with a clean save before it."""
    exp = {"a": {"script": "scripts/train_full.py", "args": {"step-sleep": 0.5}, "length": 40}}
    workdir = workflow_copy(tmp_path / "wf", exp)
    # another user's job holds half the node for 3 minutes; a job that needs the whole node is
    # queued behind it, so the scheduler reserves the node from the first one's end
    holder = _sh("sbatch", "--parsable", "-p", "defq", "-c", "4", "--mem=100", "-t", "3", "-J", "other-user",
                 "-o", "/dev/null", "--wrap", "sleep 170").strip()  # fmt: skip
    _wait("the other job to run", lambda: holder in _running_jobs(), 60)
    big = _sh("sbatch", "--parsable", "-p", "defq", "--exclusive", "--mem=100", "-t", "1", "-J", "whole-node",
              "-o", "/dev/null", "--wrap", "sleep 1").strip()  # fmt: skip
    argv = _snakemake_argv("policy=fixed:5m", "min_time=1m", "margin_s=5", "stop_signal=URG@1")
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(argv, cwd=workdir, env=python_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        status_file = Path(
            _wait(
                "segment 0 to stop",
                lambda: next((workdir / "runs" / "a").glob("*/status/seg-0000.json"), None),
                300,
            )
        )  # type: ignore[arg-type]
        status = json.loads(status_file.read_text())
    finally:
        head.terminate()
        head.wait(60)
        log.close()
        mine = [line.split()[0] for line in _sh("squeue", "-h", "-o", "%i %Z").splitlines()
                if line.split()[1:] == [str(workdir)]]  # fmt: skip
        subprocess.run(["scancel", holder, big, *mine], check=False)
    job = slurm_jobs(workdir, {"id": "JobID", "state": "State", "limit": "Timelimit", "start": "Start"})[0]
    limit_s = sum(int(x) * m for x, m in zip(reversed(job["limit"].split(":")), (1, 60, 3600), strict=False))
    assert limit_s < 5 * 60, f"not backfilled with a shorter limit: {job}"  # asked: 5 min, at least 1
    assert job["state"] == "COMPLETED", job
    assert status["stop_reason"] == "deadline" and status["deadline_source"] == "Slurm end time (squeue)", (
        status
    )
    ended, deadline = datetime.fromisoformat(status["ended"]), datetime.fromisoformat(status["deadline"])
    started = datetime.fromisoformat(job["start"]).astimezone()
    assert abs((deadline - started).total_seconds() - limit_s) <= 2, (status, job)  # the end it got
    assert 0 < (deadline - ended).total_seconds() <= 5 + 8, status


def test_a_pre_submitted_successor_queues_while_its_segment_runs_and_is_taken_over(tmp_path: Path) -> None:
    """#30 item 5, presubmit: each segment's job gets a successor as soon as it is submitted (held
    by --dependency=afterany), and the next segment takes it over instead of being submitted: every
    job after the first was submitted while the one before ran. The successor of the last one,
    which nothing takes over, is cancelled when the workflow ends. The time account counts a
    taken-over job's queue from the previous job's end (no gap), and the run equals an
    uninterrupted one."""
    sleep = sleep_per_step(segments=3, budget_s=45, steps=64)  # 4 epochs of 16 steps in 45 s jobs
    exp = {"p": {"script": "scripts/train_full.py", "args": {"step-sleep": sleep}, "length": 4}}
    workdir = workflow_copy(tmp_path / "wf", exp)
    out = _run_workflow(workdir, "policy=fixed:45s", "margin_s=5", "stop_signal=URG@1")  # das5: presubmit
    assert out.returncode == 0, out.stderr[-4000:]
    assert "takes over the pre-submitted SLURM job" in out.stderr
    statuses = _statuses(workdir, "p")
    assert len(statuses) >= 3 and statuses[-1]["status"] == "done"
    ran = [s["attempt"] for s in statuses]
    cols = {"id": "JobID", "state": "State", "submit": "Submit", "start": "Start", "end": "End"}
    jobs = {j["id"]: j for j in slurm_jobs(workdir, cols, untaken=True)}
    assert all(jobs[a]["state"] == "COMPLETED" for a in ran), jobs
    for before, after in itertools.pairwise(ran):
        assert jobs[after]["submit"] < jobs[before]["end"], (jobs[before], jobs[after])  # ISO times
    left = [j for i, j in jobs.items() if i not in ran]
    assert len(left) == 1 and left[0]["state"].startswith("CANCELLED"), left  # the last one's successor
    run = RunLayout(next((workdir / "runs" / "p").iterdir()))
    account = account_run(run)
    assert [a.attempt for a in account.attempts] == ran
    for prev, a in itertools.pairwise(account.attempts):
        assert a.submit == pytest.approx(prev.end, abs=1.0) and prev.gap_s == pytest.approx(0.0, abs=1.0)
        assert 0 <= a.seconds["queued"] < 10, a  # the node was free: it started as the job before ended
    model, losses = _uninterrupted(tmp_path, 4)
    _assert_matches(workdir, "p", model, losses)
