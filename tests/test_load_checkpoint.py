"""Reading a run's newest good state outside the training loop (batcher.load_checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeClock
from test_loop import _make

import batcher


def test_load_checkpoint_warns_when_it_falls_back(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, opt = _make(tmp_path, clock, keep=3)
    for _ in seg.range(2):
        opt.step()
    with pytest.raises(batcher.SegmentStopped):
        seg._stop("signal SIGTERM")
    seg, _, _ = _make(tmp_path, clock, keep=3)
    list(seg.range(3))
    seg.done()
    newest = batcher.load_checkpoint(tmp_path / "run")["file"]
    data = bytearray(Path(newest).read_bytes())
    data[-50] ^= 1
    Path(newest).write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"fails its \w+ check .*; using the older step-"):
        older = batcher.load_checkpoint(tmp_path / "run")
    assert older["file"] != newest and older["problems"] and older["epoch"] == 2


def test_load_checkpoint_reads_through_the_format_owner(tmp_path: Path, clock: FakeClock) -> None:
    """#28: the loader decodes with TrainingState, so another format is refused with the file
    named, not read key by key into a KeyError."""
    from batcher.ckpt.store import CheckpointStore

    seg, _, opt = _make(tmp_path, clock, keep=3)
    for _ in seg.range(2):
        opt.step()
    seg.done()
    state = batcher.load_checkpoint(tmp_path / "run")
    assert (state["epoch"], state["step"], state["done"]) == (2, 2, True) and "model" in state["objects"]
    CheckpointStore(tmp_path / "run" / "ckpt", keep=3).save({"format": 99, "objects": {}}, step=9, segment=1)
    with pytest.raises(batcher.BatcherError, match=r"step-0+9.*format 99.*reads formats"):
        batcher.load_checkpoint(tmp_path / "run")
