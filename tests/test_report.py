"""What a segment tells: log lines and its status file."""

from __future__ import annotations

import io
from pathlib import Path

from batcher.deadline import Deadline
from batcher.position import Position
from batcher.report import Report
from batcher.status import read_status
from batcher.stopping import DeadlineSeconds


def test_lines_carry_the_rank_and_say_where_the_run_is() -> None:
    out = io.StringIO()
    report = Report(out, experiment="exp", index=2, rank=1)
    report.opened(
        "step-000000012.pt", Position(1, 2, 12, 13), DeadlineSeconds(Deadline(None, "none", {}, ())), 15
    )
    report.stopped("deadline", Position(1, 7, 17, 18), 5, 14.0, 0.5, 1.2)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "[batcher rank 1] exp segment 2: resumed from checkpoint step-000000012.pt (epoch 1, batch 2, "
        "step 12); no deadline (runs to the end); margin 15s"
    )
    assert lines[1].startswith(
        "[batcher rank 1] stopped: deadline at epoch 1 batch 7 (step 17, +5 this segment)"
    )
    assert "(predicted next step 0.50s, save 1.20s)" in lines[1]


def test_status_of_a_stop_after_the_last_batch_is_not_complete(tmp_path: Path) -> None:
    report = Report(io.StringIO(), experiment="exp", index=0, rank=None)
    kwargs = dict(
        reason="deadline",
        start_step=0,
        total=2,
        epoch_len=5,
        started=100.0,
        now=160.0,
        deadline=DeadlineSeconds(Deadline(None, "none", {}, ())),
        load_s=1.0,
        save_s=2.0,
        step_s_median=0.5,
        checkpoint=None,
        run_dir=tmp_path,
    )
    report.status(tmp_path / "s.json", done=False, pos=Position(1, 5, 10, 11), **kwargs)  # type: ignore[arg-type]
    status = read_status(tmp_path / "s.json")
    assert status is not None and status.progress == 0.999 and status.seconds.train == 57.0
    report.status(tmp_path / "d.json", done=True, pos=Position(2, 0, 10, 12), **kwargs)  # type: ignore[arg-type]
    done = read_status(tmp_path / "d.json")
    assert done is not None and done.status == "done" and done.progress == 1.0
