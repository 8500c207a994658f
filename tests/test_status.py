"""The segment status file: typed, atomic, and the one definition of a finished chain."""

from __future__ import annotations

import json
from pathlib import Path

from batcher.run.status import CheckpointRef, SegmentSeconds, SegmentStatus, read_status, write_status


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    status = SegmentStatus(
        status="unfinished",
        segment=3,
        experiment="e",
        stop_reason="deadline",
        epoch=2,
        batch=5,
        step=37,
        steps_this_segment=12,
        total=10,
        progress=0.25,
        seconds=SegmentSeconds(wall=60.0, load=1.0, save=2.0, train=57.0),
        checkpoint=CheckpointRef("runs/e/x/ckpt/step-000000037.pt", "ab", "xxh3_128", 123),
        run_dir="runs/e/x",
    )
    path = tmp_path / "seg-0003.json"
    write_status(path, status)
    assert read_status(path) == status
    assert json.loads(path.read_text())["version"] == 1


def test_finished_means_done_for_at_least_the_configured_length() -> None:
    assert SegmentStatus(status="done", total=10).is_final(10)
    assert not SegmentStatus(status="done", total=10).is_final(12)  # a raised length goes on
    assert not SegmentStatus(status="unfinished", total=10).is_final(10)
    assert SegmentStatus(status="done").is_final(5)  # no total recorded: done is done


def test_anything_else_is_no_status(tmp_path: Path) -> None:
    for text in ("", "[]", '{"status": "running"}', "not json"):
        (tmp_path / "s.json").write_text(text)
        assert read_status(tmp_path / "s.json") is None
    assert read_status(tmp_path / "missing.json") is None
    (tmp_path / "s.json").write_text('{"status": "done", "new_key_of_a_later_version": 1}')
    assert read_status(tmp_path / "s.json") == SegmentStatus(status="done")
