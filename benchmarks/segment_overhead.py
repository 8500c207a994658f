"""Per-segment overhead: a whole segment process that restores, takes one step and saves,
vs the floor — a process that does the same with plain torch.load / torch.save.

Both processes import torch, build the same model (~40 MB of weights plus Adam state), load the
same state, take one step and write it back. The difference is what batcher adds per segment:
lock, deadline, hash check, manifest, status file, metric log, RNG capture.
Run: python benchmarks/segment_overhead.py   (writes results/segment_overhead.json)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"

COMMON = """
import os, signal, sys, torch
from torch import nn
torch.manual_seed(0)
torch.set_num_threads(1)
model = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(10)])
opt = torch.optim.Adam(model.parameters())
def step():
    opt.zero_grad()
    model(torch.randn(8, 1024)).sum().backward()
    opt.step()
"""

OURS = (
    COMMON
    + """
import batcher
seg = batcher.segment(run_dir=sys.argv[1], model=model, optimizer=opt, progress_every_s=0)
for epoch in seg.range(10**6):
    for _ in seg.iterate(range(1)):
        os.kill(os.getpid(), signal.SIGUSR1)   # stop at the next boundary: restore, 1 step, save
        step()
"""
)

FLOOR = (
    COMMON
    + """
path = sys.argv[1] + "/plain.pt"
if os.path.exists(path):
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])
step()
torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
"""
)


def run(code: str, arg: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, arg], check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    reps = 7
    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, floor_dir = Path(tmp) / "run", Path(tmp) / "floor"
        floor_dir.mkdir()
        run(OURS, str(ours_dir))  # first segments create the checkpoints
        run(FLOOR, str(floor_dir))
        ours, floor = [], []
        for _ in range(reps):  # interleaved, so machine load hits both alike
            ours.append(run(OURS, str(ours_dir)))
            floor.append(run(FLOOR, str(floor_dir)))
    o, f = statistics.median(ours), statistics.median(floor)
    result = {"batcher_s": o, "floor_s": f, "ratio": o / f, "reps": reps}
    print(f"segment with batcher {o:.2f}s, plain torch floor {f:.2f}s, ratio {o / f:.2f} (target <= 1.5)")
    OUT.mkdir(exist_ok=True)
    (OUT / "segment_overhead.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
