"""End-to-end goodput of a segment chain on the real (one-node) Slurm test cluster.

Runs one experiment as a chain of >= 5 Slurm jobs through profiles/das5 (policy fixed:40s, so a
job is ~40 s), then takes the run's time account from batcher.workflow.account (the code behind
`batcher timeline`: sacct's submit, start and end, the status files' and heartbeats' marks):

  gap       = job N end -> job N+1 start (what the launcher and the scheduler cost)
  goodput   = kept training seconds / wall seconds from the first submit to the last end
  slot use  = each full job's training seconds / its time limit (the policy's slot), and the
              deadlines missed (a job that ended after its status file's deadline, or TIMEOUT)

--margin learned leaves margin_s unset, so the stop margin is learned from the run's prediction
errors (batcher/stopping/margin.py); a number fixes it (the default, 3, is what earlier results used).
--stop-signal profile keeps the profile's stop signal (URG@60), as a user's run does; the default
URG@1 is what earlier results used. The slot of each job is its time limit (sacct), so --policy
das5 measures the DAS-5 daytime slot (14 minutes) during Amsterdam's working hours.

Before the chain, it times on the node what no change of ours can cut: Python's start, ``import
torch`` and a first optimizer (which imports ``torch._dynamo``), the floor of a job's start.

--queue-behind S first submits another user's job holding the node for S seconds, so the first
segment waits in the queue; --kill-after S SIGKILLs segment 1's training S seconds after its first
heartbeat (with --save-every, the work lost is at most one interval); either also prints
`batcher timeline` and draws benchmarks/results/timeline_<tag>.png.

Default: the shipped profile (executor slurm-flat). --executor slurm measures the stock plugin
for comparison. Needs `bash tests/slurm/cluster.sh up`. Run: python benchmarks/slurm_chain.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

from batcher.run.layout import RunLayout
from batcher.run.status import SegmentStatus, read_status
from batcher.workflow.account import CATEGORIES, Attempt, account_run, sacct_jobs
from batcher.workflow.plots import plot_timeline

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


FLOOR_CODE = (
    "import time; t0 = time.time(); import torch; t1 = time.time(); "
    "torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1); t2 = time.time(); print(t0, t1, t2)"
)


def torch_floor(partition: str, runs: int = 3) -> dict[str, float]:
    """Medians on a node of the partition: Python's start, import torch, a first optimizer."""
    starts, imports, optims = [], [], []
    for _ in range(runs):
        t = time.time()
        out = subprocess.run(
            ["srun", "-p", partition, "-N1", "-n1", sys.executable, "-c", "import time; print(time.time())"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        started = float(out.split()[-1])
        out = subprocess.run(
            ["srun", "-p", partition, "-N1", "-n1", sys.executable, "-c", FLOOR_CODE],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        t0, t1, t2 = (float(x) for x in out.split()[-3:])
        starts.append(started - t)  # srun + interpreter start, a bound from above
        imports.append(t1 - t0)
        optims.append(t2 - t1)
    return {
        "srun + Python start (upper bound)": statistics.median(starts),
        "import torch": statistics.median(imports),
        "first optimizer (imports torch._dynamo)": statistics.median(optims),
    }


def chain_workdir(
    wd: Path,
    *,
    step_sleep: float,
    epochs: int,
    script: str = "train_full.py",
    args: dict[str, object] | None = None,
    resources: dict[str, object] | None = None,
) -> None:
    """A copy of the workflow in ``wd`` with one experiment, ``bench``: tests/scripts/``script``
    for ``epochs`` epochs (train_full.py: of 16 steps) of ``step_sleep`` seconds a step, with
    ``args`` and ``resources``."""
    for name in ("Snakefile", "workflow", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / name)
    (wd / "scripts").mkdir()
    shutil.copy(ROOT / "tests" / "scripts" / script, wd / "scripts" / script)
    exp: dict[str, object] = {
        "script": f"scripts/{script}",
        "args": {"step-sleep": step_sleep, **(args or {})},
        "length": epochs,
    }
    if resources:
        exp["resources"] = resources
    (wd / "config.yaml").write_text(yaml.safe_dump({"experiments": {"bench": exp}}))


def _wait_for_accounting(wd: Path, timeout_s: float = 60) -> None:
    """slurmdbd records jobs asynchronously: wait until every job of the run has its end."""
    ids = [p.stem.split("-")[-1] for p in wd.glob("runs/bench/*/heartbeat/seg-*.json")]
    end = time.time() + timeout_s
    while time.time() < end:
        jobs = sacct_jobs(ids)
        if len(jobs) == len(set(ids)) and all(j.end is not None for j in jobs.values()):
            return
        time.sleep(1)


def _blocker(partition: str, seconds: float) -> str:
    """Another user's job that holds the whole node for ``seconds``: the chain queues behind it."""
    job = subprocess.run(
        ["sbatch", "--parsable", "-p", partition, "--exclusive", "--mem=100", "-J", "other-user",
         "-o", "/dev/null", "--wrap", f"sleep {seconds:g}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    while (
        job
        not in subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True).stdout
    ):
        time.sleep(0.5)
    return job


def _kill_second_segment(wd: Path, after_s: float) -> None:
    """SIGKILL the training of segment 1 ``after_s`` seconds after its first heartbeat."""
    while not list(wd.glob("runs/bench/*/heartbeat/seg-0001-*.json")):
        time.sleep(0.5)
    time.sleep(after_s)
    subprocess.run(["pkill", "-KILL", "-f", "scripts/train_full.py"], check=False)


def _slot(attempt: Attempt, status: SegmentStatus | None) -> float:
    """The time a job was given: its start to the deadline it stopped for (the policy's window,
    under a fixed policy shorter than Slurm's whole-minute limit), else its Slurm limit."""
    if status is not None and status.deadline:
        return datetime.fromisoformat(status.deadline).timestamp() - attempt.start
    return attempt.limit_s  # type: ignore[return-value]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--executor", default=None, help="override the profile's executor (e.g. slurm)")
    p.add_argument("--init-seconds", type=float, default=None, help="status-check start/interval")
    p.add_argument("--epochs", type=int, default=18, help="training length (>= 5 segments at the default)")
    p.add_argument("--tag", default=None, help="results file name (default: the executor; e.g. queue-kill)")
    p.add_argument("--policy", default="fixed:40s", help="the slot (default: %(default)s)")
    p.add_argument("--margin", default="3", help="margin_s, or 'learned' (default: %(default)s)")
    p.add_argument("--stop-signal", default="URG@1", help="stop_signal, or 'profile' (default: %(default)s)")
    p.add_argument("--step-sleep", type=float, default=0.5, help="seconds per training step")
    p.add_argument("--save-every", default=None, help="save_every (default: the profile's)")
    p.add_argument("--queue-behind", type=float, default=None, help="first queue behind a job this long (s)")
    p.add_argument("--kill-after", type=float, default=None, help="SIGKILL segment 1 after this long (s)")
    args = p.parse_args()
    partition = yaml.safe_load((ROOT / "profiles/das5/config.v8+.yaml").read_text())["default-resources"][
        "slurm_partition"
    ]
    floor = torch_floor(partition)
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        chain_workdir(wd, step_sleep=args.step_sleep, epochs=args.epochs)
        argv = [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "profiles/das5",
            "--config",
            f"policy={args.policy}",
            *([] if args.margin == "learned" else [f"margin_s={args.margin}"]),
            *([] if args.stop_signal == "profile" else [f"stop_signal={args.stop_signal}"]),
            *([] if args.save_every is None else [f"save_every={args.save_every}"]),
        ]
        executor = (
            args.executor or yaml.safe_load((ROOT / "profiles/das5/config.v8+.yaml").read_text())["executor"]
        )
        if args.executor:
            argv += ["--executor", args.executor]
        if args.init_seconds is not None:
            argv += [f"--{executor}-init-seconds-before-status-checks", str(args.init_seconds)]
        t0 = time.time()
        budget = max(1800, 3 * args.epochs * 16 * args.step_sleep)  # train_full: 16 steps an epoch
        if args.queue_behind is not None:
            _blocker(partition, args.queue_behind)
        if args.kill_after is not None:
            threading.Thread(target=_kill_second_segment, args=(wd, args.kill_after), daemon=True).start()
        done = subprocess.run(argv, cwd=wd, capture_output=True, text=True, timeout=budget)
        wall_head = time.time() - t0
        if done.returncode != 0:
            raise SystemExit(done.stderr[-4000:])
        (run_dir,) = (wd / "runs" / "bench").iterdir()
        _wait_for_accounting(wd)
        account = account_run(RunLayout(run_dir))
        statuses = {s.attempt: s for s in (read_status(p) for p in RunLayout(run_dir).statuses()) if s}
        if args.kill_after is not None or args.queue_behind is not None:
            picture = OUT / f"timeline_{args.tag or executor}.png"
            plot_timeline(account, picture, title="bench")
            timeline_text = subprocess.run(
                [sys.executable, "-m", "batcher.workflow", "timeline", "bench"],
                cwd=wd, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            print(timeline_text)
    attempts = account.attempts
    jobs = sacct_jobs([a.attempt for a in attempts])
    gaps = [a.gap_s + b.seconds["queued"] for a, b in itertools.pairwise(attempts) if a.gap_s is not None]
    resubmit = [a.gap_s for a in attempts if a.gap_s is not None]
    startup = [a.seconds["launch"] + a.seconds["imports"] + a.seconds["restore"] for a in attempts]
    breakdown = {c: statistics.median(a.seconds[c] for a in attempts) for c in CATEGORIES}
    full = [a for a in attempts if a.outcome == "deadline" and a.limit_s]
    slot_use = [a.seconds["train"] / _slot(a, statuses.get(a.attempt)) for a in full]
    missed = []
    for a in attempts:
        status = statuses.get(a.attempt)
        deadline = datetime.fromisoformat(status.deadline).timestamp() if status and status.deadline else None
        saved = status.timeline.get("saved") if status else None
        if jobs[a.attempt].state == "TIMEOUT" or (deadline and saved and saved > deadline):
            missed.append(a.attempt)
    result = {
        "executor": executor,
        "policy": args.policy,
        "margin": args.margin,
        "slot_use": slot_use,
        "slot_use_min": min(slot_use) if slot_use else None,
        "missed_deadlines": missed,
        "breakdown_median_s": breakdown,
        "floor_median_s": floor,
        "init_seconds": args.init_seconds,
        "segments": len(attempts),
        "gap_median_s": statistics.median(gaps),
        "gap_max_s": max(gaps),
        "end_to_next_submit_median_s": statistics.median(resubmit),
        "job_start_to_training_median_s": statistics.median(startup),
        "goodput": account.goodput,
        "train_s": account.totals["train"],
        "wall_s": account.span_s,
        "head_wall_s": wall_head,
        "account": account.as_dict(),  # batcher.workflow.account: what `batcher timeline --json` says
    }
    print(f"executor {executor}: {len(attempts)} attempts, {sorted(set(a.outcome for a in attempts))}")
    print(
        f"gap job end -> next start: median {result['gap_median_s']:.1f}s, max {result['gap_max_s']:.1f}s "
        f"(end -> next submit median {result['end_to_next_submit_median_s']:.1f}s)"
    )
    print(f"job start -> training start: median {result['job_start_to_training_median_s']:.1f}s")
    print(
        f"end-to-end goodput {account.goodput:.3f} ({account.totals['train']:.0f}s training in "
        f"{account.span_s:.0f}s wall)"
    )
    if slot_use:
        print(
            f"slot use of the {len(full)} full jobs (training / its start -> deadline): "
            + ", ".join(f"{u:.3f}" for u in slot_use)
            + f"; deadlines missed: {len(missed)}"
        )
    for name, seconds in breakdown.items():
        print(f"  {name}: median {seconds:.2f}s")
    for name, seconds in floor.items():
        print(f"  floor, {name}: median {seconds:.2f}s")
    OUT.mkdir(exist_ok=True)
    tag = args.tag or executor
    (OUT / f"slurm_chain_{tag}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
