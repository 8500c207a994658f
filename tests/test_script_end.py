"""A script that ends without seg.done() (batcher/api/script_end.py), in a real process: the check runs at interpreter exit."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import run_segment

import batcher

SCRIPT = """
import torch, batcher
torch.manual_seed(0)
model = torch.nn.Linear(2, 1)
seg = batcher.segment(model=model)
for epoch in seg.range(3):
    with torch.no_grad():
        model.weight.add_(1.0)
{after}
"""


def test_forgotten_done_finishes_the_run_and_says_so(tmp_path: Path) -> None:
    script = tmp_path / "forgot.py"
    script.write_text(SCRIPT.format(after="print('evaluated')"))
    run = tmp_path / "run"
    first = run_segment(script, [], run)
    assert first.returncode == 0, first.stderr
    assert "never called seg.done()" in first.stderr and "Add seg.done() after the loop" in first.stderr
    status = json.loads((run / "status" / "seg-0000.json").read_text())
    assert status["status"] == "done" and status["epoch"] == 3
    final = batcher.load_checkpoint(run)
    torch.manual_seed(0)
    expected = torch.nn.Linear(2, 1).weight.detach() + 1.0 + 1.0 + 1.0
    assert final["done"] and torch.equal(final["objects"]["model"]["weight"], expected)
    again = run_segment(script, [], run)  # nothing left to train: the workflow would not retrain
    assert again.returncode == 0 and "resumed from checkpoint" in again.stderr


def test_a_crash_after_the_loop_is_not_marked_finished(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(SCRIPT.format(after="raise RuntimeError('evaluation failed')"))
    run = tmp_path / "run"
    done = run_segment(script, [], run)
    assert done.returncode == 1 and "evaluation failed" in done.stderr
    assert "the run is not marked finished" in done.stderr
    assert not (run / "status" / "seg-0000.json").exists()


def test_a_failed_final_save_is_reported_as_itself(tmp_path: Path) -> None:
    """seg.done() was called, and its save hit a full disk: the error says so, and nothing claims
    that the script forgot seg.done()."""
    script = tmp_path / "full.py"
    failing_done = (
        "import errno, batcher.ckpt.store\n"
        "def full(*args, **kwargs):\n"
        "    raise OSError(errno.ENOSPC, 'simulated')\n"
        "batcher.ckpt.store._torch_save = full\n"
        "seg.done()"
    )
    script.write_text(SCRIPT.format(after=failing_done))
    run = tmp_path / "run"
    out = run_segment(script, [], run)
    assert out.returncode == 1 and "SaveError" in out.stderr and "disk is full" in out.stderr, out.stderr
    assert "never called seg.done()" not in out.stderr, out.stderr
    assert not (run / "status" / "seg-0000.json").exists()
