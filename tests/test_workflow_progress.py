"""Where an experiment stands, read from its run folder."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from batcher.run.layout import RunLayout
from batcher.run.status import write_status
from batcher.workflow.experiments import load_experiments
from batcher.workflow.progress import experiment_progress

CONFIG = {"policy": "fixed:10m", "experiments": {"e": {"script": "train.py", "length": 4}}}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _segment(run: RunLayout, n: int, status: str, epoch: int) -> None:
    write_status(
        run.status(n),
        {
            "status": status,
            "segment": n,
            "epoch": epoch,
            "total": 4,
            "progress": 1.0 if status == "done" else epoch / 4,
            "steps_this_segment": 10,
            "started": f"2026-11-25T1{n}:00:00+00:00",
            "ended": f"2026-11-25T1{n}:09:00+00:00",
            "seconds": {"wall": 540.0, "train": 500.0},
        },
    )


def test_states_from_not_started_to_done(tmp_path: Path) -> None:
    exp = load_experiments(CONFIG)["e"]
    run = RunLayout.of("e", exp.run_id, base=tmp_path)
    assert experiment_progress(exp, root=tmp_path, now=NOW).state == "not started"
    _segment(run, 0, "unfinished", 2)
    row = experiment_progress(exp, root=tmp_path, now=NOW)
    # 2 epochs took 500 s: 500 s more fit in one 10-minute slot (its 40 s of overhead + margin aside)
    assert row.state == "unfinished" and row.progress == 0.5 and row.eta_segments == 1
    run.log(1).parent.mkdir(parents=True, exist_ok=True)
    run.log(1).write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    failed = experiment_progress(exp, root=tmp_path, now=NOW)
    assert failed.state == "failed" and failed.problem == "RuntimeError: CUDA out of memory"
    _segment(run, 1, "done", 4)
    done = experiment_progress(exp, root=tmp_path, now=NOW)
    assert done.state == "done" and done.progress == 1.0 and done.eta == "2026-11-25T11:09:00+00:00"
