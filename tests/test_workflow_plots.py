"""Where the curves mark segment boundaries."""

from __future__ import annotations

import json
from pathlib import Path

from batcher.run.status import write_status
from batcher.workflow.plots import plot_run, segment_stops


def _status(run: Path, i: int, status: str, step: int) -> None:
    write_status(run / "status" / f"seg-{i:04d}.json", {"segment": i, "status": status, "step": step})


def test_boundaries_are_the_steps_where_segments_stopped(tmp_path: Path) -> None:
    """Epoch-level logging (rows at steps 0, 16, 32, ...) and a segment that logged nothing: the
    lines sit at the stop steps 10, 14 and 40, not at the next segment's first logged row."""
    run = tmp_path / "run"
    for i, (status, step) in enumerate(
        [("unfinished", 10), ("unfinished", 14), ("unfinished", 40), ("done", 64)]
    ):
        _status(run, i, status, step)
    rows = [{"_seq": k, "step": 16 * k, "segment": min(k, 3), "loss": 1.0 / (k + 1)} for k in range(4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert segment_stops(run) == [10.0, 14.0, 40.0]
    assert plot_run(run / "metrics.jsonl", tmp_path / "curves.png", title="t") == 1
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_no_status_files_no_boundaries(tmp_path: Path) -> None:
    assert segment_stops(tmp_path / "nothing") == []
