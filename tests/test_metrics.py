"""The metric log: rows exactly once across resumes."""

from __future__ import annotations

from pathlib import Path

import torch

from batcher.run.metrics import MetricLog, read_metrics


def test_resume_drops_rows_after_the_checkpoint_and_counts_on(tmp_path: Path) -> None:
    log = MetricLog(tmp_path / "metrics.jsonl")
    for i in range(5):
        log.log({"loss": torch.tensor(float(i)), "bad": float("nan")})
    log.close()
    again = MetricLog(tmp_path / "metrics.jsonl")
    again.resume(3)  # the checkpoint was saved after row 2
    again.log({"loss": 9.0})
    again.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["_seq"] for r in rows] == [0, 1, 2, 3] and rows[-1]["loss"] == 9.0
    assert rows[0]["loss"] == 0.0 and rows[0]["bad"] == "nan"
