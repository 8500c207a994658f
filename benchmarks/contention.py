"""A chain on a shared cluster: time to done under another user's load, with and without min_time.

The test cluster's two-node partition ``pair`` (``bash tests/slurm/cluster.sh up 2``) is kept busy
by a load generator, seeded so that runs are comparable: a stream of another user's jobs, each
holding one or both nodes whole (``--exclusive``) for a random time and asking for more than it
uses (as users do), the two-node ones leaving holes while they wait for both nodes, which the
backfill scheduler fills with what fits. The same training (a chain of ``train_full.py`` segments
through ``profiles/das5``, policy ``fixed:<slot>``) runs in it once per configuration, with the
same seed:

  fixed      every segment asks for the policy's whole limit
  min_time   segments also give ``--time-min`` (the workflow setting min_time), so backfill may
             start them early in a shorter hole

Measured per configuration: time to done (first submission -> last job's end) and the chain's
goodput, both from the time account (batcher.workflow.account), and the competitor's mean wait
(submit -> start of its jobs submitted while the chain ran). ``speedup`` is the fixed
configuration's time to done over each one's. Results: benchmarks/results/contention.json.

Not covered yet (#30): elastic width (``nodes: 1-2``) and a pre-submitted successor.
Run: python benchmarks/contention.py [--seed 1] [--train-s 240] [--slot 3m] (about 25 minutes)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from slurm_chain import chain_workdir

from batcher.run.layout import RunLayout
from batcher.workflow.account import account_run, sacct_jobs

OUT = Path(__file__).parent / "results"
PARTITION = "pair"
STEP_S = 0.5  # train_full.py --step-sleep
STEPS_PER_EPOCH = 16


@dataclass(frozen=True)
class Competitor:
    """One job of the other user: submitted ``at`` seconds into the run, ``nodes`` whole nodes
    for ``run_s`` seconds, asking for ``limit_min`` minutes."""

    at: float
    nodes: int
    run_s: int
    limit_min: int


def load(seed: int, horizon_s: float, *, mean_gap_s: float = 70.0) -> list[Competitor]:
    """The seeded stream of the other user's jobs over ``horizon_s`` seconds: 1.3 nodes for 90 s
    on average, one every 70 s, keeps the two nodes about 85 % busy (a queue that drains)."""
    rng = random.Random(seed)
    jobs, t = [], 0.0
    while t < horizon_s:
        nodes = 2 if rng.random() < 0.3 else 1
        run_s = rng.randint(30, 150)
        limit_min = max(1, -(-int(run_s * rng.uniform(1.2, 2.0)) // 60))  # over-asked, whole minutes
        jobs.append(Competitor(round(t, 1), nodes, run_s, limit_min))
        t += rng.expovariate(1 / mean_gap_s)
    return jobs


def _sbatch(job: Competitor, index: int) -> str:
    return subprocess.run(
        ["sbatch", "--parsable", "-p", PARTITION, f"--nodes={job.nodes}", "--exclusive", "--mem=100",
         f"--time={job.limit_min}", "-J", f"competitor-{index}", "-o", "/dev/null",
         "--wrap", f"sleep {job.run_s}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _generate(jobs: list[Competitor], t0: float, stop: threading.Event, submitted: list[str]) -> None:
    for i, job in enumerate(jobs):
        while time.time() < t0 + job.at:
            if stop.wait(0.2):
                return
        submitted.append(_sbatch(job, i))


def _cancel(ids: list[str]) -> None:
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def run_chain(config_name: str, *, seed: int, train_s: float, slot: str, warmup_s: float) -> dict:
    """The chain under the seeded load, in ``config_name``; its account and the competitor's wait."""
    epochs = max(1, round(train_s / (STEP_S * STEPS_PER_EPOCH)))
    jobs = load(seed, horizon_s=8 * train_s)
    stop, submitted = threading.Event(), []
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        chain_workdir(wd, step_sleep=STEP_S, epochs=epochs)
        argv = [
            sys.executable, "-m", "snakemake", "--profile", "profiles/das5",
            "--set-resources", f"segment:slurm_partition={PARTITION}", "segment:mem_mb=100",
            "--config", f"policy=fixed:{slot}", "stop_signal=URG@1",
            *(["min_time=1m"] if config_name == "min_time" else []),
        ]  # fmt: skip
        t0 = time.time()
        generator = threading.Thread(target=_generate, args=(jobs, t0, stop, submitted), daemon=True)
        generator.start()
        time.sleep(warmup_s)  # the cluster is busy before the chain arrives
        try:
            done = subprocess.run(argv, cwd=wd, capture_output=True, text=True, timeout=6 * 3600)
        finally:
            stop.set()
            generator.join()
            chain_end = time.time()
            _cancel(submitted)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-4000:])
        (run_dir,) = (wd / "runs" / "bench").iterdir()
        time.sleep(5)  # slurmdbd records asynchronously
        account = account_run(RunLayout(run_dir))
    others = sacct_jobs(submitted)
    waits = [
        (j.start if j.start is not None else chain_end) - j.submit
        for j in others.values()
        if j.submit is not None and j.submit < chain_end
    ]
    return {
        "config": config_name,
        "time_to_done_s": account.span_s,
        "goodput": account.goodput,
        "attempts": len(account.attempts),
        "queued_s": account.totals["queued"],
        "train_s": account.totals["train"],
        "competitor_jobs": len(waits),
        "competitor_mean_wait_s": statistics.mean(waits) if waits else None,
        "limits_s": [a.limit_s for a in account.attempts],
        "account": account.as_dict(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-s", type=float, default=240.0, help="training the chain needs (s)")
    p.add_argument("--slot", default="3m", help="the policy's fixed limit (default: %(default)s)")
    p.add_argument("--warmup-s", type=float, default=60.0, help="load before the chain starts")
    args = p.parse_args()
    results = [
        run_chain(name, seed=args.seed, train_s=args.train_s, slot=args.slot, warmup_s=args.warmup_s)
        for name in ("fixed", "min_time")
    ]
    fixed = results[0]["time_to_done_s"]
    for r in results:
        r["speedup"] = fixed / r["time_to_done_s"]
        wait = r["competitor_mean_wait_s"]
        print(
            f"{r['config']:>9}: done in {r['time_to_done_s']:.0f}s ({r['attempts']} jobs, queued "
            f"{r['queued_s']:.0f}s), goodput {r['goodput']:.3f}, speedup {r['speedup']:.2f}x, "
            f"competitor mean wait {wait:.0f}s over {r['competitor_jobs']} jobs"
        )
    OUT.mkdir(exist_ok=True)
    doc = {"seed": args.seed, "train_s": args.train_s, "slot": args.slot, "warmup_s": args.warmup_s,
           "results": results}  # fmt: skip
    (OUT / f"contention_seed{args.seed}.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
