"""A chain on a shared cluster: time to done under another user's load, with fixed width and
limit, with min_time, and with min_time and an elastic width.

The test cluster's two-node partition ``pair`` (``bash tests/slurm/cluster.sh up 2``) is kept busy
by a load generator, seeded so that runs are comparable: a stream of another user's jobs over a
fixed horizon, each holding one or both nodes whole (``--exclusive``) for a random time and
asking for more than it uses (as users do), the two-node ones leaving holes while they wait for
both nodes, which the backfill scheduler fills with what fits. The same training runs in it once
per configuration, with the same seed: a 2-rank DDP run (tests/scripts/train_ddp.py with
batcher.ElasticSampler, 0.5 s a step) as a chain through ``profiles/das5``, policy
``fixed:<slot>``:

  fixed      nodes: 2; every segment asks for the policy's whole limit
  min_time   nodes: 2; segments also give ``--time-min`` (min_time: 1m), so backfill may start
             them early in a shorter hole
  elastic    nodes: "1-2", min_time: 1m and narrow_after: 0s; a segment also starts on one node
             at once when only one is free (it then trains at half the rate: the same work per
             rank and step)
  presubmit  nodes: 2 and presubmit: true; each segment's successor queues while it runs
  elastic_presubmit  the last two together
  elastic_auto  as elastic, with narrow_after: auto (the default): a segment waits for both nodes
             as long as starting on one would cost (batcher.workflow.width), then takes one
  elastic_auto_presubmit  elastic_auto and presubmit together

Measured per configuration: time to done (first submission -> last job's end) and the chain's
goodput, both from the time account (batcher.workflow.account), and the competitor's mean wait
(submit -> start) over the same jobs in every configuration: all those of the horizon, each
waited for until it started. ``speedup`` is the fixed configuration's time to done over each
one's. Results: benchmarks/results/contention2n_seed<N>.json (an earlier one-node chain, fixed
against min_time only: contention_seed<N>.json).

Run: python benchmarks/contention.py [--seed 1] [--train-s 180] [--slot 3m] [--horizon-s 600]
[--configs fixed,elastic] (each configuration takes at least the horizon plus the queue's drain;
without fixed in --configs, the new ones join the seed's result file and are compared with its
fixed run)
"""

from __future__ import annotations

import argparse
import json
import os
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
CHAIN_USER = "nobody"  # who runs the chain when the benchmark runs as root (the load stays root's)
STEP_S = 0.5  # train_ddp.py --step-sleep
SAMPLES = 800  # train_ddp.py --samples: 50 steps an epoch on 2 ranks (8 samples per rank and step)
CONFIGS: dict[str, dict[str, object]] = {
    "fixed": {"nodes": 2},
    "min_time": {"nodes": 2, "min_time": "1m"},
    "elastic": {"nodes": "1-2", "min_time": "1m", "narrow_after": "0s"},
    "presubmit": {"nodes": 2, "presubmit": True},
    "elastic_presubmit": {"nodes": "1-2", "min_time": "1m", "narrow_after": "0s", "presubmit": True},
    "elastic_auto": {"nodes": "1-2", "min_time": "1m", "narrow_after": "auto"},
    "elastic_auto_presubmit": {"nodes": "1-2", "min_time": "1m", "narrow_after": "auto", "presubmit": True},
}


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


def as_user(argv: list[str], wd: Path) -> list[str]:
    """``argv`` run as :data:`CHAIN_USER` when this is root: the chain is a user's, as on a real
    cluster (Slurm marks a node count that root changes as an operator's limit and then starts the
    job on the fewest nodes of its range, which no user's narrowed job does)."""
    if os.geteuid() != 0:
        return argv
    subprocess.run(["chown", "-R", CHAIN_USER, str(wd)], check=True)
    probe = subprocess.run(["runuser", "-u", CHAIN_USER, "--", sys.executable, "-c", "import batcher"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        raise SystemExit(
            f"the chain runs as user {CHAIN_USER}, who cannot start {sys.executable} ({probe.stderr.strip()}); "
            "make its folders reachable (e.g. chmod o+x on the home folder it is under), or run as a user"
        )
    return ["runuser", "-u", CHAIN_USER, "--", "env", f"HOME={wd}", *argv]


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


def _wait_until_started(ids: list[str], timeout_s: float) -> None:
    """Until none of ``ids`` is pending (each competitor job's wait is then known)."""
    end = time.time() + timeout_s
    while ids and time.time() < end:
        out = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i"], capture_output=True, text=True).stdout
        if not set(out.split()) & set(ids):
            return
        time.sleep(2)


def run_chain(
    config_name: str, *, seed: int, train_s: float, slot: str, warmup_s: float, horizon_s: float
) -> dict:
    """The chain under the seeded load, in ``config_name``; its account and the competitor's wait."""
    config = CONFIGS[config_name]
    epochs = max(1, round(train_s / (STEP_S * SAMPLES / 16)))
    jobs = load(seed, horizon_s=horizon_s)
    stop, submitted = threading.Event(), []
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        chain_workdir(
            wd, step_sleep=STEP_S, epochs=epochs, script="train_ddp.py",
            args={"elastic": True, "samples": SAMPLES}, resources={"nodes": config["nodes"], "tasks": 1},
        )  # fmt: skip
        argv = [
            sys.executable, "-m", "snakemake", "--profile", "profiles/das5",
            "--set-resources", f"segment:slurm_partition={PARTITION}", "segment:mem_mb=100",
            "--config", f"policy=fixed:{slot}", "stop_signal=URG@1",
            *([f"min_time={config['min_time']}"] if "min_time" in config else []),
            *([f"narrow_after={config['narrow_after']}"] if "narrow_after" in config else []),
            f"presubmit={'true' if config.get('presubmit') else 'false'}",  # profiles/das5: on
        ]  # fmt: skip
        t0 = time.time()
        generator = threading.Thread(target=_generate, args=(jobs, t0, stop, submitted), daemon=True)
        generator.start()
        time.sleep(warmup_s)  # the cluster is busy before the chain arrives
        try:
            done = subprocess.run(as_user(argv, wd), cwd=wd, capture_output=True, text=True, timeout=6 * 3600)
            generator.join()  # the whole horizon's load, whenever the chain ended
            _wait_until_started(submitted, timeout_s=3600)
        finally:
            stop.set()
            generator.join()
            _cancel(submitted)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-4000:])
        (run_dir,) = (wd / "runs" / "bench").iterdir()
        time.sleep(5)  # slurmdbd records asynchronously
        account = account_run(RunLayout(run_dir))
        nodes = [j.nodes for j in sacct_jobs([a.attempt for a in account.attempts]).values()]
    others = sacct_jobs(submitted)
    waits = [j.start - j.submit for j in others.values() if j.start is not None and j.submit is not None]
    return {
        "config": config_name,
        "resources": config,
        "time_to_done_s": account.span_s,
        "goodput": account.goodput,
        "attempts": len(account.attempts),
        "nodes_per_job": nodes,
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
    p.add_argument("--train-s", type=float, default=180.0, help="training the chain needs on 2 nodes (s)")
    p.add_argument("--slot", default="3m", help="the policy's fixed limit (default: %(default)s)")
    p.add_argument("--warmup-s", type=float, default=60.0, help="load before the chain starts")
    p.add_argument("--horizon-s", type=float, default=600.0, help="how long the other user submits jobs")
    p.add_argument(
        "--configs", default="fixed,elastic",
        help=f"of {', '.join(CONFIGS)}; without fixed, the seed's result file must hold it (same settings)",
    )  # fmt: skip
    args = p.parse_args()
    names = args.configs.split(",")
    if not set(names) <= set(CONFIGS):
        raise SystemExit(f"--configs: any of {', '.join(CONFIGS)}; got {args.configs!r}")
    doc = {"seed": args.seed, "train_s": args.train_s, "slot": args.slot, "warmup_s": args.warmup_s,
           "horizon_s": args.horizon_s, "samples": SAMPLES, "step_s": STEP_S}  # fmt: skip
    out = OUT / f"contention2n_seed{args.seed}.json"
    earlier = json.loads(out.read_text()) if out.exists() else {}
    kept = [] if "fixed" in names else earlier.get("results", [])
    if kept and any(earlier.get(k) != v for k, v in doc.items()):
        raise SystemExit(f"{out} was measured with other settings; run fixed again (--configs fixed,...)")
    if not any(r["config"] == "fixed" for r in kept) and "fixed" not in names:
        raise SystemExit(f"no fixed configuration to compare with in {out}; add fixed to --configs")
    common = {"seed": args.seed, "train_s": args.train_s, "slot": args.slot, "warmup_s": args.warmup_s}
    new = [run_chain(name, **common, horizon_s=args.horizon_s) for name in names]
    results = [r for r in kept if r["config"] not in names] + new
    results.sort(key=lambda r: list(CONFIGS).index(r["config"]))
    fixed, fixed_wait = results[0]["time_to_done_s"], results[0]["competitor_mean_wait_s"]
    for r in results:
        r["speedup"] = fixed / r["time_to_done_s"]
        wait = r["competitor_mean_wait_s"]
        r["competitor_wait_ratio"] = wait / fixed_wait if fixed_wait else None
        print(
            f"{r['config']:>22}: done in {r['time_to_done_s']:.0f}s ({r['attempts']} jobs on "
            f"{r['nodes_per_job']} nodes, queued {r['queued_s']:.0f}s), goodput {r['goodput']:.3f}, "
            f"speedup {r['speedup']:.2f}x, competitor mean wait {wait:.0f}s over "
            f"{r['competitor_jobs']} jobs ({r['competitor_wait_ratio']:.2f}x fixed)"
        )
    OUT.mkdir(exist_ok=True)
    out.write_text(json.dumps({**doc, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
