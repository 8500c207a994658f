"""A run cut into segments by real deadlines in real processes equals an uninterrupted run, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TRAIN_FULL, run_chain, run_segment, sleep_per_step

import batcher


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["_seq"] for r in rows] == list(range(len(rows))), "metric rows duplicated or missing"
    return [r["loss"] for r in rows]


def _assert_same_state(a: dict, b: dict, path: str = "") -> None:
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.mark.parametrize("mode", ["mid-epoch", "epoch-boundaries"])
def test_segmented_run_is_bit_identical_to_uninterrupted(tmp_path: Path, mode: str) -> None:
    budget = 2.0 if mode == "mid-epoch" else 2.2
    sleep = sleep_per_step(segments=4, budget_s=budget, steps=96)
    args = ["--epochs", "6", "--step-sleep", str(sleep)] + (
        ["--no-iterate"] if mode == "epoch-boundaries" else []
    )
    whole = run_segment(TRAIN_FULL, args, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert "FINISHED 96" in whole.stdout

    # periodic background saves in between (every 5 steps, or every epoch) change nothing either
    every = "5 steps" if mode == "mid-epoch" else "1 step"
    statuses = run_chain(TRAIN_FULL, args, tmp_path / "cut", budget_s=budget, BATCHER_SAVE_EVERY=every)
    assert len(statuses) >= 4, [s["step"] for s in statuses]
    assert all(s["stop_reason"] == "deadline" for s in statuses[:-1])
    if mode == "mid-epoch":
        assert any(s["batch"] not in (0, 16) for s in statuses[:-1]), "no stop fell mid-epoch"
    else:
        assert all(s["batch"] == 0 for s in statuses)

    a = batcher.load_checkpoint(tmp_path / "whole")
    b = batcher.load_checkpoint(tmp_path / "cut")
    assert a["done"] and b["done"]
    _assert_same_state(a["objects"], b["objects"])
    assert a["values"] == b["values"] == {"steps": 96}
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "cut")


def test_sigkill_mid_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """The process dies between writing the new checkpoint and its rename; the old one still loads."""
    run = tmp_path / "run"
    first = run_segment(TRAIN_FULL, ["--epochs", "1", "--step-sleep", "0.05"], run, budget_s=2.0)
    assert first.returncode == 0, first.stderr
    before = batcher.load_checkpoint(run)
    killer = (
        "import os, batcher.ckpt.store as s; real = s.os.replace\n"
        "def replace(a, b):\n"
        "    if str(b).endswith('.pt'): os.kill(os.getpid(), 9)\n"
        "    return real(a, b)\n"
        "s.os.replace = replace\n"
    )
    script = tmp_path / "killed_mid_save.py"
    script.write_text(killer + f"exec(open({str(TRAIN_FULL)!r}).read())\n")
    killed = run_segment(script, ["--epochs", "1", "--step-sleep", "0.05"], run, budget_s=2.0)
    assert killed.returncode == -9
    assert any(p.name.startswith(".step-") for p in (run / "ckpt").iterdir()), "expected a torn temp file"
    after = batcher.load_checkpoint(run)
    assert after["file"] == before["file"]
    _assert_same_state(after["objects"], before["objects"])
    # and the run still finishes from there, cleaning the temp file up
    rest = run_segment(TRAIN_FULL, ["--epochs", "1"], run)
    assert rest.returncode == 0, rest.stderr
    assert not any(p.name.startswith(".step-") for p in (run / "ckpt").iterdir())
