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

Sharded (FSDP, 2 ranks on gloo, model of --sharded-mb MB plus Adam's two moments, one committed
checkpoint folder): the time until both ranks have loaded it (the slower rank's median)
  dcp:    torch.distributed.checkpoint's load alone, no hash (the floor)
  whole:  CheckpointReader.load_latest hashing the whole folder on every rank (before per-rank
          verification)
  pieces: the same, each rank hashing only the pieces it reads (what batcher.segment does)
The page cache is warm for all three (a first round is not counted), so the hash's own cost
shows, not the disk's.
Run: python benchmarks/checkpoint_io.py [--sizes-mb 10 100 1000] [--sharded-mb 200]
(updates results/checkpoint_io.json: the sizes measured in this run replace their entries)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batcher.ckpt.store import CheckpointStore
from batcher.run.atomic_files import pieces_holding

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


def sharded_worker(folder: Path, size_mb: int, reps: int) -> dict[str, float]:
    """One rank of the sharded measurement (RANK, WORLD_SIZE, MASTER_* set): write one checkpoint
    through the store, then load it ``reps`` times each way; return this rank's medians."""
    import torch.distributed as dist
    from torch import nn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from batcher.ckpt.ranks import Ranks
    from batcher.ckpt.reading import CheckpointReader
    from batcher.ckpt.sharded import ShardedState

    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(512, 512, bias=False) for _ in range(size_mb)])  # 1 MB each
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 512)).sum().backward()
    opt.step()  # Adam's moments exist: the checkpoint holds 3x the model
    sharded, ranks = ShardedState("model", model, {"optimizer": opt}), Ranks()
    store = CheckpointStore(folder)
    tmp = ranks.from_main(store.prepare_sharded(1) if ranks.main else None)
    sharded.save(tmp)
    dist.barrier()
    info = store.commit_sharded({"format": 1}, step=1, segment=0) if ranks.main else None
    info = ranks.from_main(info)
    checkpoint = folder / info.file

    def apply(state: dict, _info: object) -> None:
        sharded.load(Path(state["sharded_dir"]))

    def timed(run: object) -> float:
        dist.barrier()
        t = time.perf_counter()
        run()  # type: ignore[operator]
        dist.barrier()  # until both ranks have it
        return time.perf_counter() - t

    def verified(scope: object) -> None:
        loaded = CheckpointReader(folder).load_latest(apply=apply, scope=scope, agree=ranks.all_good)  # type: ignore[arg-type]
        assert loaded is not None and not loaded.problems, loaded and loaded.problems

    ways = {
        "dcp": lambda: sharded.load(checkpoint),
        "whole": lambda: verified(None),
        "pieces": lambda: verified(sharded.files_read),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for rep in range(reps + 1):
        for key, run in ways.items() if rep % 2 else reversed(ways.items()):
            t = timed(run)
            if rep:
                times[key].append(t)
    reads = sharded.files_read(checkpoint)
    assert info.parts is not None
    pieces = sum(
        len(info.parts[name]) if r is None else len(pieces_holding(r, info.chunk))
        for name, r in reads.items()
    )
    dist.destroy_process_group()
    return {
        **{k: statistics.median(v) for k, v in times.items()},
        "hashed_mb_whole": info.size / 1e6,
        "hashed_mb_pieces": min(pieces * info.chunk, info.size) / 1e6,
    }


def measure_sharded(size_mb: int, reps: int) -> dict[str, float]:
    """Two ranks in fresh interpreters (never forked from a test process); the slower rank counts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        procs = []
        for rank in range(2):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}
            env.update(MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            argv = [sys.executable, __file__, "--sharded-worker", tmp, "--sharded-mb", str(size_mb)]
            argv += ["--reps", str(reps)]
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=1800)[0] for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit(f"a rank of the sharded measurement failed: {[p.returncode for p in procs]}")
    per_rank = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    slowest = {k: max(r[k] for r in per_rank) for k in ("dcp", "whole", "pieces")}
    return {
        **slowest,
        "hashed_mb_whole_per_rank": per_rank[0]["hashed_mb_whole"],
        "hashed_mb_pieces_by_rank": [r["hashed_mb_pieces"] for r in per_rank],
        "whole_ratio": slowest["whole"] / slowest["dcp"],
        "pieces_ratio": slowest["pieces"] / slowest["dcp"],
        "pieces_vs_whole": slowest["pieces"] / slowest["whole"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes-mb", type=int, nargs="*", default=[10, 100, 1000])
    p.add_argument(
        "--sharded-mb", type=int, nargs="*", default=[200], help="FSDP model sizes (0 values: skip)"
    )
    p.add_argument("--reps", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--sharded-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sharded_worker:  # one rank of measure_sharded
        print(json.dumps(sharded_worker(Path(args.sharded_worker), args.sharded_mb[0], args.reps)))
        return
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
    if args.sharded_mb:
        print(
            f"\n{'FSDP 2 ranks':>13} {'dcp load':>9} {'whole hash':>11} {'ratio':>6} {'own pieces':>11} {'ratio':>6}"
        )
    for size in args.sharded_mb:
        r = measure_sharded(size, args.reps)
        results[f"sharded_{size}MB"] = r
        print(
            f"{size:>11}MB {r['dcp']:8.3f}s {r['whole']:10.3f}s {r['whole_ratio']:6.2f} "
            f"{r['pieces']:10.3f}s {r['pieces_ratio']:6.2f}   (hashed per rank: "
            f"{r['hashed_mb_whole_per_rank']:.0f} MB -> {r['hashed_mb_pieces_by_rank']} MB)"
        )
    OUT.mkdir(exist_ok=True)
    out = OUT / "checkpoint_io.json"
    kept = json.loads(out.read_text()) if out.exists() else {}  # sizes not measured in this run stay
    out.write_text(json.dumps({**kept, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
