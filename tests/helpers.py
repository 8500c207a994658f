"""Running train scripts as real processes, one segment at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, python_env

# Starts the clock after `import torch`, so a segment's training time does not depend on how long
# the import takes on a loaded machine.
_LAUNCH = (
    "import os, runpy, sys, time, torch, torch._dynamo, torch.optim; "
    "budget = os.environ.pop('TEST_BUDGET_S', ''); "
    "budget and os.environ.__setitem__('BATCHER_DEADLINE', '@%f' % (time.time() + float(budget))); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_segment(
    script: Path, args: list[str], run_dir: Path, *, budget_s: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run one segment of ``script`` on ``run_dir``; ``budget_s`` is its training time."""
    extra = {"BATCHER_RUN_DIR": str(run_dir), "BATCHER_MARGIN_S": "0.2", **env}
    if budget_s is not None:
        extra["TEST_BUDGET_S"] = str(budget_s)
    return subprocess.run(
        [sys.executable, "-c", _LAUNCH, str(script), *args],
        env=python_env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def run_chain(
    script: Path, args: list[str], run_dir: Path, *, budget_s: float, max_segments: int = 40
) -> list[dict[str, Any]]:
    """Run segments until one reports done; return every segment's status."""
    statuses = []
    for i in range(max_segments):
        done = run_segment(script, args, run_dir, budget_s=budget_s)
        assert done.returncode == 0, done.stderr
        status = json.loads((run_dir / "status" / f"seg-{i:04d}.json").read_text())
        statuses.append(status)
        if status["status"] == "done":
            return statuses
    raise AssertionError(f"not done after {max_segments} segments")


TRAIN_FULL = ROOT / "tests" / "scripts" / "train_full.py"
EXAMPLE = ROOT / "examples" / "train.py"
