"""The README's train-script example, verbatim (read from README.md), stopped by a signal after
every batch of an epoch and resumed: each epoch's tail (the scheduler step, ``seg.values``, the
log after the inner loop) runs exactly once, in order, and the run equals an uninterrupted one."""

from __future__ import annotations

import io
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, FakeClock
from torch import nn

import batcher

BATCHES, EPOCHS = 4, 3


def _example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using batcher in your train script") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    return code.group(1).replace("batcher.segment(", "batcher.segment(clock=clock, out=out, ", 1)


class Batches:
    """A loader of BATCHES fixed batches that sends SIGUSR1 while handing out batch ``stop_at`` of
    the whole run (1-based), once: the stop falls at the boundary after that batch."""

    def __init__(self, stop_at: int | None, seen: list[int]) -> None:
        g = torch.Generator().manual_seed(3)
        self.data = [(torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)) for _ in range(BATCHES)]
        self.stop_at, self.seen = stop_at, seen

    def __len__(self) -> int:
        return BATCHES

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.data:
            self.seen.append(1)
            if len(self.seen) == self.stop_at:
                os.kill(os.getpid(), signal.SIGUSR1)
            yield batch


def _segment(run: Path, clock: FakeClock, stop_at: int | None, seen: list[int]) -> dict[str, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    namespace: dict[str, Any] = {
        "batcher": batcher,
        "model": model,
        "opt": opt,
        "sched": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        "loss_fn": nn.MSELoss(),
        "train_loader": Batches(stop_at, seen),
        "clock": clock,
        "out": io.StringIO(),
    }
    exec(_example().replace("range(100)", f"range({EPOCHS})"), namespace)
    return {"model": model.state_dict(), "lr": opt.param_groups[0]["lr"]}


@pytest.mark.parametrize("stop_at", list(range(1, BATCHES * EPOCHS + 1)))
def test_the_readme_example_resumes_exactly_wherever_the_stop_fell(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, stop_at: int
) -> None:
    monkeypatch.setenv("BATCHER_RUN_DIR", str(tmp_path / "whole"))
    whole = _segment(tmp_path / "whole", clock, None, [])
    monkeypatch.setenv("BATCHER_RUN_DIR", str(tmp_path / "cut"))
    seen: list[int] = []
    segments = 0
    while True:
        segments += 1
        assert segments <= 3
        try:
            cut = _segment(tmp_path / "cut", clock, stop_at, seen)
            break
        except batcher.SegmentStopped as stopped:
            assert stopped.code == 0
    # the last batch of the run: the run finishes in that segment, else one stop and a resume
    assert segments == (1 if stop_at == BATCHES * EPOCHS else 2)
    rows = [json.loads(r) for r in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(r) for r in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["loss"]) for r in rows] == [(r["epoch"], r["loss"]) for r in expected]
    assert cut["lr"] == whole["lr"] == 1e-2 * 0.5**EPOCHS  # the scheduler stepped once per epoch
    assert all(torch.equal(cut["model"][k], whole["model"][k]) for k in whole["model"])
