"""The save protocol in one process (the ranks' side runs in tests/test_ranks.py)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from batcher.ckpt.ranks import Ranks
from batcher.ckpt.saving import CollectiveSave
from batcher.ckpt.store import CheckpointStore
from batcher.errors import SaveError
from batcher.run.metrics import MetricLog


def test_one_process_saves_through_the_store_after_syncing_the_metric_rows(tmp_path: Path) -> None:
    metrics = MetricLog(tmp_path / "metrics.jsonl")
    metrics.log({"loss": 1.0})
    saver = CollectiveSave(CheckpointStore(tmp_path / "ckpt"), Ranks(), None, metrics)
    info = saver.save({"w": torch.ones(3)}, step=4, segment=0)
    assert info.file == "step-000000004.pt" and info.step == 4
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_a_failed_save_is_a_save_error_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    full = [False]

    def fault(label: str) -> None:
        if full[0] and label == "checkpoint:before-fsync":
            raise OSError(errno.ENOSPC, "simulated")

    store = CheckpointStore(tmp_path / "ckpt", fault=fault)
    saver = CollectiveSave(store, Ranks(), None, MetricLog(tmp_path / "metrics.jsonl"))
    saver.save({"w": torch.ones(3)}, step=1, segment=0)
    full[0] = True
    with pytest.raises(SaveError, match=r"disk is full.*The previous checkpoint \(step 1\) is intact"):
        saver.save({"w": torch.zeros(3)}, step=2, segment=0)
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 1
