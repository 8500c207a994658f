"""Reading checkpoints back: the newest good one, verified before it is trusted (batcher/ckpt/reading.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from helpers import checkpoint_state, filled_store

from batcher.ckpt.manifest import CheckpointInfo, write_manifest
from batcher.ckpt.reading import CheckpointReader
from batcher.ckpt.store import CheckpointStore
from batcher.errors import NoUsableCheckpointError
from batcher.run.atomic_files import ALGORITHMS, checkpoint_size, part_digests, parts_digest


@pytest.mark.parametrize(
    ("damage", "reported"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated or replaced"),
        (
            lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]),
            "fails its xxh3_128 check",
        ),
        (lambda p: p.unlink(), "is missing"),
    ],
    ids=["truncated", "flipped-byte", "missing"],
)
def test_damaged_newest_falls_back_to_previous(tmp_path: Path, damage, reported: str) -> None:
    store = filled_store(tmp_path)
    newest = store.directory / "step-000000030.pt"
    damage(newest)
    loaded = CheckpointStore(store.directory, keep=3).load_latest()
    assert loaded is not None and loaded.info.step == 20
    assert len(loaded.problems) == 1
    assert "step-000000030.pt" in loaded.problems[0] and reported in loaded.problems[0]


def test_half_written_manifest_falls_back_to_scanning_files(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    text = store.manifest_path.read_text()
    store.manifest_path.write_text(text[: len(text) // 2])
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 30
    assert "manifest.json is damaged" in loaded.problems[0]
    assert "without a hash check" in loaded.problems[1]


def test_manifest_pointing_to_missing_file(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    doc = json.loads(store.manifest_path.read_text())
    doc["checkpoints"].append({**doc["checkpoints"][-1], "file": "step-000000099.pt", "step": 99})
    store.manifest_path.write_text(json.dumps(doc))
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 30
    assert "step-000000099.pt is missing" in loaded.problems[0]


def test_no_good_checkpoint_is_a_clear_error_and_nothing_is_deleted(tmp_path: Path) -> None:
    store = filled_store(tmp_path, count=2)
    for p in store.directory.glob("step-*.pt"):
        p.write_bytes(b"broken")
    before = sorted(p.name for p in store.directory.iterdir())
    with pytest.raises(NoUsableCheckpointError) as info:
        store.load_latest()
    message = str(info.value)
    assert "step-000000020.pt" in message and "step-000000010.pt" in message
    assert "Nothing was deleted" in message and "mv " in message
    assert sorted(p.name for p in store.directory.iterdir()) == before


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    """Loading must never run code from a checkpoint (weights_only)."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    store = CheckpointStore(tmp_path / "ckpt")
    store.directory.mkdir()
    (store.directory / "step-000000001.pt").write_bytes(b"")
    torch.save({"x": Evil()}, store.directory / "step-000000001.pt", pickle_module=pickle)
    with pytest.raises(NoUsableCheckpointError, match="cannot load it"):
        store.load_latest()
    assert not marker.exists()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_known_hash_verifies(tmp_path: Path, algorithm: str) -> None:
    """Checkpoints keep the hash they were written with (the manifest says which): older runs
    hashed with blake3, or sha256 where neither package is installed, still verify."""
    if algorithm != "sha256":
        pytest.importorskip({"xxh3_128": "xxhash", "blake3": "blake3"}[algorithm])
    store = CheckpointStore(tmp_path / "ckpt", keep=3)
    store.algorithm = algorithm
    store.save(checkpoint_state(1), step=1, segment=0)
    store.save(checkpoint_state(2), step=2, segment=0)
    assert [e.algorithm for e in store.entries()] == [algorithm, algorithm]
    newest = store.directory / "step-000000002.pt"
    data = bytearray(newest.read_bytes())
    data[-100] ^= 1
    newest.write_bytes(bytes(data))
    loaded = CheckpointStore(store.directory).load_latest()
    assert loaded is not None and loaded.info.step == 1
    assert f"fails its {algorithm} check" in loaded.problems[0]


def test_a_rank_verifies_just_the_pieces_it_reads(tmp_path: Path) -> None:
    """A sharded folder's manifest entry lists each file's piece digests (here 100-byte pieces):
    a rank that reads bytes 0-299 and 800-1023 of a shard hashes pieces 0-2 and 8-10 only."""
    ckpt = tmp_path / "ckpt"
    folder = ckpt / "step-000000001.dcp"
    folder.mkdir(parents=True)
    torch.save({"objects": {}}, folder / "rest.pt")
    shard = folder / "__0_0.distcp"
    shard.write_bytes(bytes(range(256)) * 4)  # 1024 bytes: 11 pieces
    parts = part_digests(folder, "sha256", 100)
    assert len(parts["__0_0.distcp"]) == 11
    entry = CheckpointInfo(
        "step-000000001.dcp",
        1,
        0,
        parts_digest(parts, "sha256"),
        checkpoint_size(folder),
        0.0,
        parts=parts,
        chunk=100,
    )
    write_manifest(ckpt, [entry], keep_note="")
    data = bytearray(shard.read_bytes())
    data[750] ^= 1  # piece 7
    shard.write_bytes(bytes(data))
    around = {"rest.pt": None, "__0_0.distcp": [(0, 300), (800, 224)]}
    loaded = CheckpointReader(ckpt).load_latest(scope=lambda f: around)
    assert loaded is not None and not loaded.problems
    del loaded
    for scope in ({"rest.pt": None, "__0_0.distcp": [(700, 60)]}, {"__0_0.distcp": None}):
        with pytest.raises(NoUsableCheckpointError, match=r"__0_0\.distcp fails its sha256 check"):
            CheckpointReader(ckpt).load_latest(scope=lambda f, s=scope: s)  # type: ignore[misc]
    with pytest.raises(NoUsableCheckpointError, match=r"step-000000001\.dcp fails its sha256 check"):
        CheckpointReader(ckpt).load_latest()  # no scope: every piece
