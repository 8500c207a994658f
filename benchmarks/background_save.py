"""Periodic saves in the background: how long training waits for one, and what they cost a loop.

1. Stall. For states of 10 MB, 100 MB and 1 GB (float32 tensors of 1 MB, as in checkpoint_io):
   the time training is held up by one periodic save (``CollectiveSave.start``: the state copied
   to host memory, then written, hashed, fsynced and committed on a thread) against a synchronous
   save of the same state through the same store (``CollectiveSave.save``). "steady" is every
   periodic save after the first (it reuses the host buffers); "first" the first of a process,
   with its buffers allocated on a thread beforehand (as the segment loop does after the first
   step) and without. Target: stall <= 0.25x the synchronous save at 1 GB.
2. Slowdown. The same training loop (an MLP whose model + Adam state is about 300 MB, under
   ``batcher.segment`` with no deadline) runs a fixed number of steps saving every
   ``--every`` seconds in the background, and never saving; the two alternate, medians are
   compared. The cost of one save (extra seconds / saves made) is then divided by the default
   interval (30 min) for the slowdown at the default. Target: <= 2 % at the default.
Run: python benchmarks/background_save.py [--sizes-mb 10 100 1000] [--seconds 30] [--every 5] [--pairs 5]
(writes results/background_save.json)
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import batcher
from batcher.ckpt.periodic import DEFAULT_SAVE_EVERY, SaveEvery
from batcher.ckpt.ranks import Ranks
from batcher.ckpt.saving import CollectiveSave
from batcher.ckpt.store import CheckpointStore
from batcher.run.metrics import MetricLog

OUT = Path(__file__).parent / "results"


def make_state(size_mb: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.randn(512, 512, generator=g) for i in range(size_mb)}


def stall(size_mb: int, reps: int) -> dict[str, float]:
    """Seconds: synchronous save, first periodic stall, steady periodic stall, background write."""
    state = make_state(size_mb)
    sync, steady, writes = [], [], []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        store = CheckpointStore(Path(tmp) / "ckpt", keep=2)
        saver = CollectiveSave(store, Ranks(), None, MetricLog(Path(tmp) / "metrics.jsonl"))
        step = 0
        for _ in range(reps):
            step += 1
            t0 = time.perf_counter()
            saver.save(state, step=step, segment=0)
            sync.append(time.perf_counter() - t0)
        first = 0.0
        for rep in range(reps + 1):
            step += 1
            for t in state.values():  # training changed the state since the last save
                t.add_(1.0)
            held = saver.start(state, step=step, segment=0)
            info = saver.wait()
            assert info is not None
            writes.append(info.save_s)
            if rep == 0:
                first = held
            else:
                steady.append(held)
        # the segment loop lets a thread allocate the buffers after the first step, long before
        # the first periodic save: here, a pause twice as long as that allocation took above
        fresh = CollectiveSave(store, Ranks(), None, MetricLog(Path(tmp) / "metrics.jsonl"))
        fresh.prepare(state)
        time.sleep(2 * first)
        step += 1
        first_prepared = fresh.start(state, step=step, segment=0)
        fresh.wait()
        store.wait_for_cleanup()
    return {
        "sync_save_s": statistics.median(sync),
        "first_stall_s": first,
        "first_prepared_stall_s": first_prepared,
        "stall_s": statistics.median(steady),
        "background_write_s": statistics.median(writes),
        "stall_ratio": statistics.median(steady) / statistics.median(sync),
        "first_stall_ratio": first / statistics.median(sync),
    }


class _Net(nn.Module):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.layers(x))


def loop(run_dir: Path, *, steps: int, save_every: str, width: int, depth: int) -> tuple[float, int, float]:
    """Train ``steps`` steps under batcher.segment; return (seconds, background saves, stall seconds)."""
    torch.manual_seed(0)
    model = _Net(width, depth)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(32, width)
    out = io.StringIO()
    seg = batcher.segment(
        run_dir=run_dir, model=model, optimizer=opt, save_every=save_every, out=out, progress_every_s=0
    )
    t0 = time.perf_counter()
    for _ in seg.range(1):
        for _ in seg.iterate(range(steps)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    elapsed = time.perf_counter() - t0  # before done(): its final save is the same in both
    seg.done()
    lines = [ln for ln in out.getvalue().splitlines() if "in the background" in ln]
    stalls = [float(ln.split("training paused ")[1].split("s")[0]) for ln in lines]
    return elapsed, len(lines), sum(stalls)


def slowdown(seconds: float, every_s: float, pairs: int, width: int, depth: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        probe, _, _ = loop(Path(tmp) / "probe", steps=20, save_every="off", width=width, depth=depth)
        steps = max(20, int(seconds / (probe / 20)))
        never, saving, saves, stalls = [], [], [], []
        for i in range(pairs):
            t, _, _ = loop(Path(tmp) / f"never{i}", steps=steps, save_every="off", width=width, depth=depth)
            never.append(t)
            t, n, s = loop(
                Path(tmp) / f"every{i}", steps=steps, save_every=f"{every_s:g}s", width=width, depth=depth
            )
            saving.append(t)
            saves.append(n)
            stalls.append(s)
    t_never, t_saving = statistics.median(never), statistics.median(saving)
    n = max(statistics.median(saves), 1)
    per_save = max(t_saving - t_never, 0.0) / n
    default_s = SaveEvery.parse(DEFAULT_SAVE_EVERY).seconds or 1800.0
    state_mb = (width * width + width) * depth * 3 * 4 / 1e6  # parameters + Adam's two moments
    return {
        "state_mb": round(state_mb, 1),
        "steps": steps,
        "every_s": every_s,
        "seconds_never": t_never,
        "seconds_saving": t_saving,
        "saves": n,
        "stall_per_save_s": statistics.median(stalls) / n,
        "slowdown_measured": t_saving / t_never - 1.0,
        "cost_per_save_s": per_save,
        "default_interval_s": default_s,
        "slowdown_at_default": per_save / default_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each training loop")
    p.add_argument("--every", type=float, default=5.0, help="save interval of the saving loop (s)")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--depth", type=int, default=6)
    a = p.parse_args()
    torch.set_num_threads(1)  # one core trains; the writer thread has the other
    results: dict[str, object] = {"stall": {}, "slowdown": {}}
    for mb in a.sizes_mb:
        r = stall(mb, a.reps)
        results["stall"][str(mb)] = r  # type: ignore[index]
        print(
            f"{mb:>5} MB  sync save {r['sync_save_s']:.3f}s  periodic stall {r['stall_s']:.3f}s "
            f"({r['stall_ratio']:.2f}x; first {r['first_prepared_stall_s']:.3f}s with its buffers prepared, "
            f"{r['first_stall_s']:.3f}s = {r['first_stall_ratio']:.2f}x without)  "
            f"background write {r['background_write_s']:.3f}s",
            flush=True,
        )
    s = slowdown(a.seconds, a.every, a.pairs, a.width, a.depth)
    results["slowdown"] = s
    print(
        f"loop with {s['state_mb']:.0f} MB of state, {s['steps']} steps: never {s['seconds_never']:.2f}s, "
        f"saving every {s['every_s']:g}s {s['seconds_saving']:.2f}s ({s['saves']:g} saves) -> "
        f"{100 * s['slowdown_measured']:.1f}% slower; {s['cost_per_save_s']:.3f}s per save -> "
        f"{100 * s['slowdown_at_default']:.3f}% at the default interval ({s['default_interval_s']:.0f}s)"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "background_save.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
