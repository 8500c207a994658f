"""What a segment tells: log lines and its status file."""

from __future__ import annotations

import io
from pathlib import Path

from batcher.api.report import Report, SegmentEnd
from batcher.api.settings import read_settings
from batcher.ckpt.training_state import Position
from batcher.run.status import read_status
from batcher.stopping.deadline import Deadline
from batcher.stopping.decision import DeadlineSeconds

NO_DEADLINE = DeadlineSeconds(Deadline(None, "none", {}, ()))


def _report(tmp_path: Path, out: io.StringIO, rank: int | None) -> Report:
    env = {"BATCHER_RUN_DIR": str(tmp_path), "BATCHER_EXPERIMENT": "exp", "BATCHER_SEGMENT": "2"}
    return Report(out, read_settings(env), tmp_path / "ckpt", rank=rank)


def test_lines_carry_the_rank_and_say_where_the_run_is(tmp_path: Path) -> None:
    out = io.StringIO()
    report = _report(tmp_path, out, rank=1)
    report.opened("step-000000012.pt", Position(1, 2, 12, 13), NO_DEADLINE, "margin 15s")
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
    report = _report(tmp_path, io.StringIO(), rank=None)
    times = (100.0, 160.0, 1.0, 2.0)
    report.status(
        SegmentEnd(
            False,
            "deadline",
            Position(1, 5, 10, 11),
            0,
            2,
            5,
            *times,
            NO_DEADLINE,
            0.5,
            None,
            {"training": 3.0},
        )
    )
    status = read_status(tmp_path / "status" / "seg-0002.json")
    assert status is not None and status.progress == 0.999 and status.seconds.train == 57.0
    assert status.run_dir == str(tmp_path) and status.segment == 2
    report.status(
        SegmentEnd(True, "finished", Position(2, 0, 10, 12), 0, 2, 5, *times, NO_DEADLINE, 0.5, None, {})
    )
    done = read_status(tmp_path / "status" / "seg-0002.json")
    assert done is not None and done.status == "done" and done.progress == 1.0
