"""Attack the run: SIGKILL at random instants and at every kind of file operation, then finish.

The attack runs in a fresh process (tests/scripts/kill_attack.py) that forks each segment, so a
test can afford dozens of kills. The promise checked: after resuming to the end, weights and
every logged loss are bit-identical to an uninterrupted run, with no duplicate or missing metric
row, whatever instant the kills fell on.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from conftest import ROOT, python_env

import batcher

STEPS = 3 * 16
KINDS = {"rename", "fsync", "unlink", "save", "log", "time"}


def test_random_kills_lose_nothing(tmp_path: Path) -> None:
    seed = os.environ.get("TEST_KILL_SEED", "1")
    run, ref, report = tmp_path / "run", tmp_path / "reference", tmp_path / "report.json"
    result = _attack(run, ref, seed, report, "deadline")
    assert result["kills"] >= 50, result
    assert set(result["kinds"]) == KINDS, result

    expected, final = batcher.load_checkpoint(ref), batcher.load_checkpoint(run)
    assert final["done"]
    _same(expected["objects"], final["objects"])
    losses = [json.loads(x)["loss"] for x in (ref / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["_seq"] for r in rows] == list(range(STEPS))
    assert [r["loss"] for r in rows] == losses


def test_kills_of_a_run_saving_in_the_background_lose_at_most_one_interval(tmp_path: Path) -> None:
    """No deadline, a background save every 4 steps, killed at least 20 times (at random instants
    and at a torch.save, fsync or rename of a save, mostly on the writer thread) until it ends.

    Each kill loses at most the interval, the step in progress and the steps trained while the
    save being written was in flight (measured: the rows logged before the kill against the
    newest committed checkpoint); every completed run equals the uninterrupted one."""
    run, ref, report = tmp_path / "run", tmp_path / "reference", tmp_path / "report.json"
    result = _attack(run, ref, "2", report, "periodic")
    assert result["kills"] >= 20 and {"time", "save", "fsync", "rename"} <= set(result["kinds"]), result
    in_flight = math.ceil(result["write_s"] / result["step_s"])  # steps a write can overlap
    bound = result["save_every"] + 1 + in_flight
    worst = max(k["lost"] for k in result["lost"])
    assert worst <= bound, result["lost"]
    assert worst > 0  # the kills did land mid-training
    losses = [json.loads(x)["loss"] for x in (ref / "metrics.jsonl").read_text().splitlines()]
    expected = batcher.load_checkpoint(ref)
    for finished in [run, *tmp_path.glob("run.done-*")]:
        final = batcher.load_checkpoint(finished)
        assert final["done"]
        _same(expected["objects"], final["objects"])
        rows = [json.loads(x) for x in (finished / "metrics.jsonl").read_text().splitlines()]
        assert [r["_seq"] for r in rows] == list(range(STEPS))
        assert [r["loss"] for r in rows] == losses


def _attack(run: Path, ref: Path, seed: str, report: Path, mode: str) -> dict[str, Any]:
    """Run tests/scripts/kill_attack.py in a fresh interpreter; return its report."""
    script = ROOT / "tests" / "scripts" / "kill_attack.py"
    done = subprocess.run(
        [sys.executable, str(script), str(run), str(ref), seed, str(report), mode],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(report.read_text())
    assert "error" not in result, result.get("error")
    return result


def _same(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    else:
        assert a == b
