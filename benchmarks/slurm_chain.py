"""End-to-end goodput of a segment chain on the real (one-node) Slurm test cluster.

Runs one experiment as a chain of >= 5 Slurm jobs through profiles/das5 (policy fixed:40s, so a
job is ~40 s), then rebuilds each segment's timeline from sacct (submit, start, end) and the status
JSON (training start, last save end):

  gap       = job N end -> job N+1 start (what the launcher and the scheduler cost)
  goodput   = seconds spent in training steps / wall seconds from the first submit to the last end
  slot use  = each full job's training seconds / its time limit (the policy's slot), and the
              deadlines missed (a job that ended after its status file's deadline, or TIMEOUT)

--margin learned leaves margin_s unset, so the stop margin is learned from the run's prediction
errors (batcher/stopping/margin.py); a number fixes it (the default, 3, is what earlier results used).
--stop-signal profile keeps the profile's stop signal (URG@60), as a user's run does; the default
URG@1 is what earlier results used. The slot of each job is its time limit (sacct), so --policy
das5 measures the DAS-5 daytime slot (14 minutes) during Amsterdam's working hours.

Before the chain, it times on the node what no change of ours can cut: Python's start, ``import
torch`` and a first optimizer (which imports ``torch._dynamo``), the floor of a job's start.

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
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,Submit,Start,End,Timelimit", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, submit, start, end, limit = line.split("|")
        rows[jid] = {"state": state, "submit": submit, "start": start, "end": end, "limit": limit}
    return rows


def limit_seconds(text: str) -> float:
    """sacct's Timelimit ([D-]HH:MM:SS or MM:SS) in seconds."""
    days, _, clock = text.rpartition("-")
    parts = [int(x) for x in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return (int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2]


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


def ts(text: str) -> float:
    return datetime.fromisoformat(text).astimezone().timestamp()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--executor", default=None, help="override the profile's executor (e.g. slurm)")
    p.add_argument("--init-seconds", type=float, default=None, help="status-check start/interval")
    p.add_argument("--epochs", type=int, default=18, help="training length (>= 5 segments at the default)")
    p.add_argument("--tag", default=None)
    p.add_argument("--policy", default="fixed:40s", help="the slot (default: %(default)s)")
    p.add_argument("--margin", default="3", help="margin_s, or 'learned' (default: %(default)s)")
    p.add_argument("--stop-signal", default="URG@1", help="stop_signal, or 'profile' (default: %(default)s)")
    p.add_argument("--step-sleep", type=float, default=0.5, help="seconds per training step")
    args = p.parse_args()
    partition = yaml.safe_load((ROOT / "profiles/das5/config.v8+.yaml").read_text())["default-resources"][
        "slurm_partition"
    ]
    floor = torch_floor(partition)
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        for name in ("Snakefile", "workflow", "profiles"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / name)
        (wd / "scripts").mkdir()
        shutil.copy(ROOT / "tests" / "scripts" / "train_full.py", wd / "scripts" / "train_full.py")
        exp = {
            "script": "scripts/train_full.py",
            "args": {"step-sleep": args.step_sleep},
            "length": args.epochs,
        }
        (wd / "config.yaml").write_text(yaml.safe_dump({"experiments": {"bench": exp}}))
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
        done = subprocess.run(argv, cwd=wd, capture_output=True, text=True, timeout=budget)
        wall_head = time.time() - t0
        if done.returncode != 0:
            raise SystemExit(done.stderr[-4000:])
        log = wd / ".snakemake" / "log"
        text = "\n".join(f.read_text() for f in log.glob("*.log"))
        job_ids = [
            line.split("SLURM jobid ")[1].split()[0] for line in text.splitlines() if "SLURM jobid" in line
        ]
        jobs = sacct(job_ids)
        statuses = [json.loads(f.read_text()) for f in sorted(wd.glob("runs/bench/*/status/seg-*.json"))]
    rows = []
    for jid, st in zip(job_ids, statuses, strict=True):
        j = jobs[jid]
        rows.append(
            {
                "job": jid,
                "state": j["state"],
                "submit": ts(j["submit"]),
                "start": ts(j["start"]),
                "train_start": datetime.fromisoformat(st["started"]).timestamp(),
                "save_end": datetime.fromisoformat(st["ended"]).timestamp(),
                "end": ts(j["end"]),
                "train_s": st["seconds"]["train"],
                "slot_s": limit_seconds(j["limit"]),
                "stop": st["stop_reason"],
                "deadline": datetime.fromisoformat(st["deadline"]).timestamp()
                if st.get("deadline")
                else None,
                "wall_s": st["seconds"]["wall"],
                "timeline": st.get("timeline", {}),
            }
        )
    gaps = [b["start"] - a["end"] for a, b in itertools.pairwise(rows)]
    resubmit = [b["submit"] - a["end"] for a, b in itertools.pairwise(rows)]
    startup = [r["train_start"] - r["start"] for r in rows]
    wall = rows[-1]["end"] - rows[0]["submit"]
    train = sum(r["train_s"] for r in rows)
    # where a job's time goes outside training (sacct's start/end have 1 s resolution)
    parts = {
        "job start -> Python started (the job's shell)": ("start", "launched"),
        "Python started -> batcher.segment() (interpreter, import torch, script)": ("launched", "segment"),
        "batcher.segment() -> training (lock, restore)": ("segment", "training"),
        "last save end -> status written": ("saved", "status"),
        "status written -> job end (exit, job step teardown)": ("status", "end"),
    }
    breakdown = {}
    for name, (a_key, b_key) in parts.items():
        values = []
        for r in rows:
            t = {**r["timeline"], "start": r["start"], "end": r["end"]}
            if a_key in t and b_key in t:
                values.append(t[b_key] - t[a_key])
        if values:
            breakdown[name] = statistics.median(values)
    full = [r for r in rows if r["stop"] == "deadline"]
    slot_use = [r["train_s"] / r["slot_s"] for r in full]
    missed = [
        r["job"] for r in rows if r["state"] == "TIMEOUT" or (r["deadline"] and r["save_end"] > r["deadline"])
    ]
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
        "segments": len(rows),
        "gap_median_s": statistics.median(gaps),
        "gap_max_s": max(gaps),
        "end_to_next_submit_median_s": statistics.median(resubmit),
        "job_start_to_training_median_s": statistics.median(startup),
        "goodput": train / wall,
        "train_s": train,
        "wall_s": wall,
        "head_wall_s": wall_head,
        "timeline": rows,
    }
    print(f"executor {executor}: {len(rows)} segments, all {set(r['state'] for r in rows)}")
    print(
        f"gap job end -> next start: median {result['gap_median_s']:.1f}s, max {result['gap_max_s']:.1f}s "
        f"(end -> next submit median {result['end_to_next_submit_median_s']:.1f}s)"
    )
    print(f"job start -> training start: median {result['job_start_to_training_median_s']:.1f}s")
    print(f"end-to-end goodput {result['goodput']:.3f} ({train:.0f}s training in {wall:.0f}s wall)")
    if slot_use:
        print(
            f"slot use of the {len(full)} full jobs (training / slot of {full[0]['slot_s']:g}s): "
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
