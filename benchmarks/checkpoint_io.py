"""Checkpoint save/load cost: the store (atomic, hashed, fsynced; verified load) vs plain torch.

For states of 10 MB, 100 MB and 1 GB (float32 tensors of 1 MB each, like a model's layers):
  save: CheckpointStore.save   vs torch.save(state, path)            (both end with an fsync)
  load: CheckpointStore.load_latest, copying into tensors while the hash is checked
        vs torch.load(path, weights_only=True) + the same copy
Each is the median of several repetitions, measured in this same run.
Run: python benchmarks/checkpoint_io.py [--sizes-mb 10 100 1000] (writes results/checkpoint_io.json)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batcher.store import CheckpointStore

OUT = Path(__file__).parent / "results"


def make_state(size_mb: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.randn(512, 512, generator=g) for i in range(size_mb)}


def copy_into(dst: dict[str, torch.Tensor], src: dict[str, torch.Tensor]) -> None:
    for k, v in dst.items():
        v.copy_(src[k])


def plain_save(state: dict[str, torch.Tensor], path: Path) -> None:
    torch.save(state, path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def measure(size_mb: int, reps: int) -> dict[str, float]:
    state = make_state(size_mb)
    target = {k: torch.empty_like(v) for k, v in state.items()}
    times: dict[str, list[float]] = {"plain_save": [], "store_save": [], "plain_load": [], "store_load": []}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        store = CheckpointStore(Path(tmp) / "ckpt", keep=1)
        plain = Path(tmp) / "plain.pt"
        for i in range(reps):
            t = time.perf_counter()
            plain_save(state, plain)
            times["plain_save"].append(time.perf_counter() - t)
            t = time.perf_counter()
            store.save({"objects": state}, step=i, segment=0)
            times["store_save"].append(time.perf_counter() - t)
            t = time.perf_counter()
            copy_into(target, torch.load(plain, weights_only=True, map_location="cpu"))
            times["plain_load"].append(time.perf_counter() - t)
            t = time.perf_counter()
            loaded = store.load_latest(apply=lambda state, info: copy_into(target, state["objects"]))
            assert loaded is not None
            times["store_load"].append(time.perf_counter() - t)
            del loaded
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        **med,
        "save_ratio": med["store_save"] / med["plain_save"],
        "load_ratio": med["store_load"] / med["plain_load"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 100, 1000])
    args = p.parse_args()
    results = {}
    print(
        f"{'state':>7} {'plain save':>11} {'store save':>11} {'ratio':>6} {'plain load':>11} {'store load':>11} {'ratio':>6}"
    )
    for size in args.sizes_mb:
        r = measure(size, reps=7 if size <= 100 else 5)
        results[f"{size}MB"] = r
        print(
            f"{size:>5}MB {r['plain_save']:10.3f}s {r['store_save']:10.3f}s {r['save_ratio']:6.2f} "
            f"{r['plain_load']:10.3f}s {r['store_load']:10.3f}s {r['load_ratio']:6.2f}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "checkpoint_io.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
