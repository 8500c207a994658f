"""Goodput of a time slot: the fraction of a slot spent in training steps that were saved in time.

Three ways to end a slot, run over the same random step-time series (0.05-2 s per step with
jitter, occasional slow steps), on a simulated clock so a 300 s slot takes milliseconds:

  batcher   this library's real segment loop (predictive stop), a fake clock and a simulated save
  seed      the original Torch Batcher: check the clock at epoch boundaries, fixed margin (T/10)
  signal    submitit/Lightning: a signal 90 s (scaled to the slot: T/10) before the limit, then save

A save that would end after the limit is a miss: the job is killed and the slot's work is lost.
Run: python benchmarks/goodput.py   (writes benchmarks/results/goodput.json and goodput.png)
"""

from __future__ import annotations

import io
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import batcher
from batcher.ckpt.store import CheckpointInfo, CheckpointStore

OUT = Path(__file__).parent / "results"
SLOTS = (60.0, 300.0)
RUNS = 24
STEPS_PER_EPOCH = 20
SAVE_S = 1.5  # simulated save time (write + fsync of a mid-sized model on a network disk)
START_S = 8.0  # job start-up before the first step (interpreter, imports, restore)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def step_times(rng: random.Random, n: int) -> list[float]:
    base = rng.uniform(0.05, 2.0)
    out = []
    for _ in range(n):
        t = base * rng.uniform(0.8, 1.25)
        if rng.random() < 0.02:
            t *= 3  # an occasional slow step (GC, I/O)
        out.append(t)
    return out


def run_batcher(slot: float, steps: list[float], margin_s: float) -> dict[str, Any]:
    clock = Clock()
    start = clock.now

    class SimStore(CheckpointStore):
        def save(self, state: dict[str, Any], *, step: int, segment: int) -> CheckpointInfo:
            clock.now += SAVE_S
            return CheckpointInfo(f"step-{step:09d}.pt", step, segment, "", 10_000_000, clock.now, SAVE_S)

        def load_latest(self, apply: Any = None, **_: Any) -> None:  # scope, agree: one process
            return None

    trained = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        clock.now += START_S
        model = nn.Linear(2, 2)
        seg = batcher.segment(
            run_dir=tmp,
            model=model,
            deadline=f"@{start + slot}",
            margin_s=margin_s,
            clock=clock,
            out=io.StringIO(),
            progress_every_s=0,
            store=SimStore(Path(tmp) / "ckpt"),
        )
        it = iter(steps)
        try:
            for _ in seg.range(10_000):
                for _ in seg.iterate(range(STEPS_PER_EPOCH)):
                    dt = next(it)
                    clock.now += dt
                    trained += dt
        except batcher.SegmentStopped:
            pass
    end = clock.now
    missed = end > start + slot
    # the target: waste (vs the ideal slot - start - save) <= max(2 s, one step) + save + margin
    waste = (slot - START_S - SAVE_S) - trained
    bound = max(2.0, max(steps[:200])) + SAVE_S + margin_s
    return {
        "goodput": 0.0 if missed else trained / slot,
        "missed": missed,
        "spare_s": start + slot - end,
        "within_target": (not missed) and waste <= bound,
    }


def run_seed(slot: float, steps: list[float], margin_s: float) -> dict[str, Any]:
    t, trained, i = START_S, 0.0, 0
    while True:  # the seed checked the clock only when an epoch ended
        for _ in range(STEPS_PER_EPOCH):
            t += steps[i]
            trained += steps[i]
            i += 1
        if t + margin_s >= slot:
            break
    t += SAVE_S
    missed = t > slot
    return {"goodput": 0.0 if missed else trained / slot, "missed": missed, "spare_s": slot - t}


def run_signal(slot: float, steps: list[float], lead_s: float) -> dict[str, Any]:
    t, trained, i = START_S, 0.0, 0
    while t < slot - lead_s:  # the signal comes at slot - lead; the step in flight finishes
        t += steps[i]
        trained += steps[i]
        i += 1
    t += SAVE_S
    missed = t > slot
    return {"goodput": 0.0 if missed else trained / slot, "missed": missed, "spare_s": slot - t}


def main() -> None:
    torch.set_num_threads(1)
    results: dict[str, Any] = {"slots": {}, "settings": {"runs": RUNS, "save_s": SAVE_S, "start_s": START_S}}
    rows = []
    for slot in SLOTS:
        rng = random.Random(int(slot))
        margin = max(2.0, slot / 60)  # the library's margin, scaled for the short test slots
        per: dict[str, list[dict[str, Any]]] = {"batcher": [], "seed": [], "signal": []}
        for _ in range(RUNS):
            steps = step_times(rng, 100_000)
            per["batcher"].append(run_batcher(slot, steps, margin))
            per["seed"].append(run_seed(slot, steps, slot / 10))
            per["signal"].append(run_signal(slot, steps, 90.0 * slot / 900.0))
        summary = {}
        for name, runs in per.items():
            summary[name] = {
                "goodput_mean": statistics.mean(r["goodput"] for r in runs),
                "goodput_min": min(r["goodput"] for r in runs),
                "misses": sum(r["missed"] for r in runs),
                "spare_s_median": statistics.median(r["spare_s"] for r in runs),
                "within_target": sum(r.get("within_target", False) for r in runs),
            }
            rows.append((slot, name, summary[name]))
        results["slots"][str(int(slot))] = summary
    ideal = {str(int(s)): (s - START_S - SAVE_S) / s for s in SLOTS}
    results["ideal_goodput"] = ideal
    print(
        f"{'slot':>5} {'strategy':<8} {'goodput':>8} {'vs ideal':>9} {'min':>6} {'misses':>7} {'spare s':>8}"
    )
    for slot, name, s in rows:
        ratio = s["goodput_mean"] / ideal[str(int(slot))]
        print(
            f"{slot:5.0f} {name:<8} {s['goodput_mean']:8.3f} {ratio:9.3f} {s['goodput_min']:6.3f} "
            f"{s['misses']:4d}/{RUNS} {s['spare_s_median']:8.1f} "
            + (f"{s['within_target']:6d}/{RUNS}" if name == "batcher" else f"{'':>9}")
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "goodput.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results)


def _plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = ["batcher", "seed", "signal"]
    for k, slot in enumerate(results["slots"]):
        vals = [results["slots"][slot][n]["goodput_mean"] for n in names]
        ax.bar([i + 0.28 * k for i in range(3)], vals, width=0.26, label=f"{slot} s slot")
    ax.set_xticks([i + 0.14 for i in range(3)], names)
    ax.set_ylabel("mean goodput (saved training / slot)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Goodput of a slot (misses count as 0)")
    fig.tight_layout()
    fig.savefig(OUT / "goodput.png", dpi=100)


if __name__ == "__main__":
    main()
