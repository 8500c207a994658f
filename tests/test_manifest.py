"""The checkpoint manifest and checkpoint names."""

from __future__ import annotations

from pathlib import Path

from batcher.ckpt.manifest import (
    MANIFEST,
    CheckpointInfo,
    checkpoint_order,
    is_checkpoint_name,
    new_checkpoint_name,
    read_manifest,
    write_manifest,
)


def test_names_follow_the_step_and_order_the_saves() -> None:
    assert new_checkpoint_name(96, "pt", set()) == "step-000000096.pt"
    taken = {"step-000000096.pt", "step-000000096.1.pt"}
    assert new_checkpoint_name(96, "pt", taken) == "step-000000096.2.pt"
    names = ["step-000000096.1.pt", "step-000000100.dcp", "step-000000096.pt"]
    assert sorted(names, key=checkpoint_order) == [
        "step-000000096.pt",
        "step-000000096.1.pt",
        "step-000000100.dcp",
    ]
    assert not is_checkpoint_name(".step-000000096.pt.tmp-12") and not is_checkpoint_name("manifest.json")


def test_written_manifest_reads_back_oldest_first(tmp_path: Path) -> None:
    entries = [
        CheckpointInfo("step-000000010.1.pt", 10, 1, "b", 2, 2.0),
        CheckpointInfo("step-000000010.pt", 10, 0, "a", 1, 1.0),
    ]
    write_manifest(tmp_path, entries, keep_note="")
    read, problem = read_manifest(tmp_path)
    assert problem is None and read == entries[::-1]


def test_missing_and_damaged_manifests_are_told_apart(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) == (None, None)
    (tmp_path / MANIFEST).write_text('{"format": 1, "checkpoints": [{"file": 1}]')
    entries, problem = read_manifest(tmp_path)
    assert entries is None and problem is not None and "is damaged" in problem
    (tmp_path / MANIFEST).write_text('{"format": 99, "checkpoints": []}')
    assert "unknown format 99" in (read_manifest(tmp_path)[1] or "")
