"""The heartbeat file: written whole, read back, anything else read as no heartbeat."""

from __future__ import annotations

import json
from pathlib import Path

from batcher.run.heartbeat import HEARTBEAT_VERSION, Heartbeat, read_heartbeat, write_heartbeat


def _beat(**kw: object) -> Heartbeat:
    values: dict = dict(
        segment=2, attempt="1234", time=1_800_000_100.0, step=57, first_step=40, committed_step=50,
        committed_at=1_800_000_080.0, held_s=1.5, held_at_commit=1.0,
        timeline={"launched": 1_800_000_000.0, "segment": 1_800_000_004.0, "training": 1_800_000_005.0},
    )  # fmt: skip
    return Heartbeat(**{**values, **kw})


def test_round_trip_and_version(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat" / "seg-0002-1234.json"
    write_heartbeat(path, _beat())
    assert read_heartbeat(path) == _beat()
    assert json.loads(path.read_text())["version"] == HEARTBEAT_VERSION
    write_heartbeat(path, _beat(step=60))  # rewritten in place, never a second file
    assert read_heartbeat(path) == _beat(step=60) and len(list(path.parent.iterdir())) == 1


def test_unknown_keys_are_ignored_and_anything_else_is_no_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "beat.json"
    path.write_text(json.dumps({**_beat().as_dict(), "from_a_newer_version": 1}))
    assert read_heartbeat(path) == _beat()
    assert read_heartbeat(tmp_path / "missing.json") is None
    for text in ("", "{", "[1, 2]", '{"segment": 1}', "\xff"):
        path.write_text(text, errors="surrogateescape")
        assert read_heartbeat(path) is None, text
