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
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,Submit,Start,End", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, submit, start, end = line.split("|")
        rows[jid] = {"state": state, "submit": submit, "start": start, "end": end}
    return rows


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
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        for name in ("Snakefile", "workflow", "profiles"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / name)
        (wd / "scripts").mkdir()
        shutil.copy(ROOT / "tests" / "scripts" / "train_full.py", wd / "scripts" / "train_full.py")
        exp = {"script": "scripts/train_full.py", "args": {"step-sleep": 0.5}, "length": args.epochs}
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
            "stop_signal=URG@1",
        ]
        executor = (
            args.executor or yaml.safe_load((ROOT / "profiles/das5/config.v8+.yaml").read_text())["executor"]
        )
        if args.executor:
            argv += ["--executor", args.executor]
        if args.init_seconds is not None:
            argv += [f"--{executor}-init-seconds-before-status-checks", str(args.init_seconds)]
        t0 = time.time()
        done = subprocess.run(argv, cwd=wd, capture_output=True, text=True, timeout=1800)
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
        "job start -> Python started (Snakemake's job step)": ("start", "launched"),
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
    slot_s = (
        float(args.policy.removeprefix("fixed:").removesuffix("s"))
        if args.policy.startswith("fixed:")
        else None
    )
    full = [r for r in rows if r["stop"] == "deadline"]
    slot_use = [r["train_s"] / slot_s for r in full] if slot_s else []
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
            f"slot use of the {len(full)} full jobs (training / {slot_s:g}s slot): "
            + ", ".join(f"{u:.3f}" for u in slot_use)
            + f"; deadlines missed: {len(missed)}"
        )
    for name, seconds in breakdown.items():
        print(f"  {name}: median {seconds:.2f}s")
    OUT.mkdir(exist_ok=True)
    tag = args.tag or executor
    (OUT / f"slurm_chain_{tag}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
