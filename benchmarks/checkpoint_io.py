"""Checkpoint save/load cost: the store (atomic, hashed, fsynced; verified load) vs plain torch.

For states of 10 MB, 100 MB and 1 GB (float32 tensors of 1 MB each, like a model's layers):
  save: CheckpointStore.save   vs torch.save(state, path)            (both end with an fsync)
        and vs "kept": torch.save to a new file while the previous one is still on disk, the
        least any save that survives a crash must do (this VM is slower at that)
        and vs "overwrite": torch.save over the previous file, as a training loop calls it
        (it pays for truncating the old file; a kill meanwhile loses both)
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


def measure(size_mb: int, blocks: int, per_block: int, settle_s: float) -> dict[str, float]:
    state = make_state(size_mb)
    target = {k: torch.empty_like(v) for k, v in state.items()}
    times: dict[str, list[float]] = {
        "plain_save": [],
        "store_save": [],
        "kept_save": [],
        "over_save": [],
        "plain_load": [],
        "store_load": [],
    }
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        store = CheckpointStore(Path(tmp) / "ckpt", keep=1)
        plain = Path(tmp) / "plain.pt"
        n = 0

        def save_plain() -> None:
            plain_save(state, plain)

        def free_plain() -> None:
            plain.unlink(missing_ok=True)

        def save_kept() -> None:
            plain_save(state, Path(tmp) / f"kept-{n}.pt")

        def free_kept() -> None:  # keep only the newest, as a crash-safe save must while writing
            for old in sorted(Path(tmp).glob("kept-*.pt"), key=lambda p: int(p.stem[5:]))[:-1]:
                old.unlink()

        def save_over() -> None:  # what a training loop does: torch.save over its last file
            plain_save(state, Path(tmp) / "over.pt")

        def save_store() -> None:
            store.save({"objects": state}, step=n, segment=0)

        def load_plain() -> None:
            copy_into(target, torch.load(plain, weights_only=True, map_location="cpu"))

        def load_store() -> None:
            loaded = store.load_latest(apply=lambda state, info: copy_into(target, state["objects"]))
            assert loaded is not None
            del loaded

        # Each way runs in a block of consecutive saves (then loads of what it wrote), the
        # blocks alternating ABC CBA ... because the virtual disk's speed drifts. Interleaving
        # single saves instead let one way's writes land in memory another way had just freed:
        # a save that followed another way's 1 GB write was up to 1.6x slower here, whichever
        # way it was. The first save of a block (a different file layout than steady state)
        # is not counted. Every save starts with no dirty data in flight and the disk settled;
        # only "overwrite" includes freeing the previous file (torch truncates it; 0.75 s for
        # 1 GB here): the plain and kept saves free it untimed before, the store deletes its old checkpoint on a background thread once
        # the new one is durable (and waits for that, untimed, before its next save).
        ways = [
            ("plain_save", save_plain, free_plain, "plain_load", load_plain),
            ("store_save", save_store, store.wait_for_cleanup, "store_load", load_store),
            ("kept_save", save_kept, free_kept, None, None),
            ("over_save", save_over, lambda: None, None, None),
        ]
        for b in range(blocks):
            for key, save, free, load_key, load in ways if b % 2 == 0 else ways[::-1]:
                for rep in range(per_block + 1):
                    n += 1
                    free()
                    os.sync()
                    time.sleep(settle_s)
                    t = time.perf_counter()
                    save()
                    if rep:
                        times[key].append(time.perf_counter() - t)
                    if load_key and load:
                        t = time.perf_counter()
                        load()
                        if rep:
                            times[load_key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        **med,
        "save_ratio": med["store_save"] / med["plain_save"],
        "save_ratio_vs_kept": med["store_save"] / med["kept_save"],
        "save_ratio_vs_over": med["store_save"] / med["over_save"],
        "load_ratio": med["store_load"] / med["plain_load"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 100, 1000])
    args = p.parse_args()
    results = {}
    print(
        f"{'state':>7} {'plain save':>11} {'store save':>11} {'ratio':>6} {'kept save':>10} {'ratio':>6} "
        f"{'overwrite':>10} {'ratio':>6} "
        f"{'plain load':>11} {'store load':>11} {'ratio':>6}"
    )
    for size in args.sizes_mb:
        r = measure(size, blocks=2, per_block=4 if size <= 100 else 3, settle_s=max(0.2, size / 500))
        results[f"{size}MB"] = r
        print(
            f"{size:>5}MB {r['plain_save']:10.3f}s {r['store_save']:10.3f}s {r['save_ratio']:6.2f} "
            f"{r['kept_save']:9.3f}s {r['save_ratio_vs_kept']:6.2f} "
            f"{r['over_save']:9.3f}s {r['save_ratio_vs_over']:6.2f} "
            f"{r['plain_load']:10.3f}s {r['store_load']:10.3f}s {r['load_ratio']:6.2f}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "checkpoint_io.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
