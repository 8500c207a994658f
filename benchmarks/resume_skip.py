"""Time to the first batch after a mid-epoch resume, against a fresh start of the same loader.

A map-style dataset whose ``__getitem__`` takes 1 ms (as in issue 21), batches of 32, shuffled,
``--batches`` batches per epoch. For a plain ``DataLoader`` with 0 and 2 workers (resumed by
``batcher.api.replay.EpochReplay``: the epoch's shuffle replayed, the done batches' indices drawn
and skipped) and torchdata's ``StatefulDataLoader`` with 2 workers (resumed from its own
``state_dict()``), the time from "make the epoch's iterator" to "first batch in hand" is measured
at 10 %, 50 % and 90 % of the epoch and for a fresh start of the same loader, in this same run
(median of ``--reps``). "replay" is what a resume with workers cost before: iterating through
the done batches. Target: every resume within 1.5x of a fresh start.
Run: python benchmarks/resume_skip.py [--batches 400] [--reps 3] (writes results/resume_skip.json)
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batcher.api.replay import EpochReplay
from batcher.ckpt.captured import capture_rng, restore_rng

OUT = Path(__file__).parent / "results"
BATCH = 32
POINTS = (0.1, 0.5, 0.9)


class SlowSamples(Dataset[torch.Tensor]):
    def __init__(self, n: int, fetch_s: float) -> None:
        self.n, self.fetch_s = n, fetch_s

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(self.fetch_s)
        return torch.full((8,), float(i))


def _first_batch(make_iter: Callable[..., Any], *args: Any) -> float:
    t0 = time.perf_counter()
    it = make_iter(*args)
    next(it)
    elapsed = time.perf_counter() - t0
    del it
    return elapsed


def plain(workers: int, batches: int, fetch_s: float, reps: int) -> dict[str, float]:
    data = SlowSamples(batches * BATCH, fetch_s)
    out: dict[str, list[float]] = {"fresh": []}
    for _ in range(reps):
        torch.manual_seed(0)
        loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers)
        out["fresh"].append(_first_batch(iter, loader))
        for point in POINTS:
            skip = int(point * batches)
            torch.manual_seed(0)
            epoch_rng = capture_rng()
            resumed = EpochReplay()
            resumed.resume_from(epoch_rng)
            loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers)
            out.setdefault(f"resume_{int(point * 100)}", []).append(
                _first_batch(functools.partial(resumed.batches, self_resuming=False), loader, skip)
            )
    if workers:  # the replay a resume with workers used to do, at the first point only
        skip = int(POINTS[0] * batches)
        restore_rng(capture_rng())
        loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers)

        def replay() -> Any:
            it = iter(loader)
            for _ in range(skip):
                next(it)
            return it

        out["replay_10"] = [_first_batch(replay)]
    return {k: statistics.median(v) for k, v in out.items()}


def stateful(workers: int, batches: int, fetch_s: float, reps: int) -> dict[str, float]:
    from torchdata.stateful_dataloader import StatefulDataLoader

    data = SlowSamples(batches * BATCH, fetch_s)
    out: dict[str, list[float]] = {"fresh": []}
    states: dict[float, Any] = {}
    torch.manual_seed(0)
    source = StatefulDataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers)
    it = iter(source)
    done = 0
    for point in POINTS:  # the states a run would have saved at each point (not timed)
        while done < int(point * batches):
            next(it)
            done += 1
        states[point] = source.state_dict()
    del it
    for _ in range(reps):
        loader = StatefulDataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers)
        out["fresh"].append(_first_batch(iter, loader))
        for point in POINTS:
            loader = StatefulDataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers)
            loader.load_state_dict(states[point])
            out.setdefault(f"resume_{int(point * 100)}", []).append(_first_batch(iter, loader))
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=400)
    p.add_argument("--fetch-ms", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    fetch_s = a.fetch_ms / 1000
    results: dict[str, dict[str, float]] = {
        "plain, 0 workers": plain(0, a.batches, fetch_s, a.reps),
        "plain, 2 workers": plain(2, a.batches, fetch_s, a.reps),
    }
    try:
        results["StatefulDataLoader, 2 workers"] = stateful(2, a.batches, fetch_s, a.reps)
    except ImportError:
        print("torchdata is not installed: pip install torchdata (or -e '.[data]')")
    for name, r in results.items():
        worst = max(r[f"resume_{int(x * 100)}"] for x in POINTS)
        r["worst_ratio"] = worst / r["fresh"]
        points = "  ".join(
            f"{int(x * 100)}%: {r[f'resume_{int(x * 100)}']:.3f}s ({r[f'resume_{int(x * 100)}'] / r['fresh']:.2f}x)"
            for x in POINTS
        )
        replay = f"  [replay at 10%, as before: {r['replay_10']:.2f}s]" if "replay_10" in r else ""
        print(f"{name:<32} fresh {r['fresh']:.3f}s  {points}{replay}", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "resume_skip.json").write_text(
        json.dumps(
            {"batches": a.batches, "batch": BATCH, "fetch_ms": a.fetch_ms, "results": results}, indent=2
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
