"""Snakemake planning time for finished chains: this workflow vs the naive checkpoint chain.

Builds N experiments x M finished segments on disk (status files, summaries, results, in order of
time), then times `snakemake -n` (a restart of a finished workflow) with:
  batcher   this workflow: the input function reads the status files on disk
  naive     the same workflow, but its input function calls checkpoints.segment.get() on every
            segment of the chain (the usual Snakemake pattern), re-evaluating the DAG per segment
Also times an empty workflow (0 experiments' worth of planning: interpreter + Snakefile parse)
and reports planning time above it. Run: python benchmarks/workflow_scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT))

from batcher.run.layout import ResultsLayout, RunLayout  # noqa: E402
from batcher.workflow.experiments import load_experiments  # noqa: E402

NAIVE = '''

def last_segment(wildcards):
    """The naive chain: ask Snakemake for every segment, one checkpoint evaluation each."""
    from batcher.run.status import read_status

    exp = EXPERIMENTS[wildcards.exp]
    n = 0
    while True:
        checkpoints.segment.get(exp=exp.name, run=exp.run_id, n=f"{n:04d}")
        path = run_layout(exp.name).status(n)
        if read_status(path).is_final(exp.length):
            return str(path)
        n += 1
'''


def build(workdir: Path, n_exp: int, n_seg: int, naive: bool) -> None:
    for name in ("Snakefile", "workflow", "profiles", "examples"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    if naive:
        with open(workdir / "workflow/rules/common.smk", "a") as f:
            f.write(NAIVE)
    config = {
        "experiments": {f"e{i}": {"script": "examples/train.py", "length": n_seg} for i in range(n_exp)}
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    exps = load_experiments(config)
    t = time.time() - 10 * n_exp * n_seg
    for exp in exps.values():
        run = RunLayout.of(exp.name, exp.run_id, base=workdir)
        run.status_dir.mkdir(parents=True)
        for n in range(n_seg):
            p = run.status(n)
            done = n == n_seg - 1
            p.write_text(
                json.dumps(
                    {
                        "version": 1,
                        "status": "done" if done else "unfinished",
                        "total": n_seg,
                        "epoch": n + 1,
                        "step": n + 1,
                    }
                )
            )
            os.utime(p, (t, t))
            t += 1
        results = ResultsLayout.of(exp.name, base=workdir)
        for p in (run.final_summary(n_seg), results.summary, results.state, results.curves, results.timeline):
            touch(p, t)
            t += 1
    for name in ("summary.png", "summary.tsv"):
        touch(ResultsLayout.across(name, base=workdir), t)


def touch(path: Path, when: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    os.utime(path, (when, when))


def plan_seconds(workdir: Path, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "-n", "--quiet"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        elapsed = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        if "Nothing to be done" not in done.stdout + done.stderr:
            raise SystemExit(f"{workdir}: the finished workflow would run jobs:\n{done.stdout[-3000:]}")
        best = min(best, elapsed)
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", nargs="+", default=["1x50", "1x200", "1x400", "20x100"])
    p.add_argument("--naive-max-segments", type=int, default=200, help="skip the naive run above this")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(tmp) / "base"
        base_dir.mkdir()
        build(base_dir, 1, 1, naive=False)
        base = plan_seconds(base_dir, 5)
        print(f"empty-ish workflow (1x1): {base:.2f}s — subtracted below")
        print(
            f"{'shape':>7} {'batcher':>9} {'(raw)':>7} {'per 100 seg':>12} {'naive':>9} {'naive/batcher':>14}"
        )
        for shape in args.shapes:
            n_exp, n_seg = map(int, shape.split("x"))
            ours_dir = Path(tmp) / f"ours-{shape}"
            ours_dir.mkdir()
            build(ours_dir, n_exp, n_seg, naive=False)
            raw = plan_seconds(ours_dir, 5)
            ours = max(0.0, raw - base)
            naive = None
            if n_exp * n_seg <= args.naive_max_segments * max(1, n_exp // 10 + 1):
                naive_dir = Path(tmp) / f"naive-{shape}"
                naive_dir.mkdir()
                build(naive_dir, n_exp, n_seg, naive=True)
                naive = max(0.0, plan_seconds(naive_dir, 1) - base)
            per100 = ours / (n_exp * n_seg) * 100
            ratio = f"{naive / max(ours, 1e-3):14.1f}" if naive is not None else f"{'-':>14}"
            naive_s = f"{naive:8.2f}s" if naive is not None else f"{'skipped':>9}"
            print(f"{shape:>7} {ours:8.2f}s {raw:6.2f}s {per100:11.3f}s {naive_s} {ratio}")
            results[shape] = {
                "batcher_s": ours,
                "batcher_raw_s": raw,
                "naive_s": naive,
                "batcher_s_per_100_segments": per100,
            }
    results["baseline_s"] = {"1x1": base}
    OUT.mkdir(exist_ok=True)
    (OUT / "workflow_scaling.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
