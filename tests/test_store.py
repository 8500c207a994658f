from __future__ import annotations

import errno
import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from batcher.errors import BatcherError, NoUsableCheckpointError, SaveError
from batcher.files import ALGORITHMS, default_algorithm, new_hash
from batcher.store import CheckpointStore


def _state(v: float) -> dict:
    return {"w": torch.full((64,), v), "n": int(v)}


def _filled(tmp_path: Path, count: int = 3, keep: int = 3) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "ckpt", keep=keep)
    for i in range(1, count + 1):
        store.save(_state(i), step=i * 10, segment=i)
    store.wait_for_cleanup()  # old checkpoints are deleted on a background thread
    return store


def test_round_trip_and_keep_last_k(tmp_path: Path) -> None:
    store = _filled(tmp_path, count=4, keep=2)
    assert [e.step for e in store.entries()] == [30, 40]
    assert sorted(p.name for p in store.directory.iterdir()) == [
        "manifest.json",
        "step-000000030.pt",
        "step-000000040.pt",
    ]
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 40 and loaded.problems == []
    assert torch.equal(loaded.state["w"], torch.full((64,), 4.0))


def test_empty_store_is_a_fresh_start(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "ckpt").load_latest() is None


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
    store = _filled(tmp_path)
    newest = store.directory / "step-000000030.pt"
    damage(newest)
    loaded = CheckpointStore(store.directory, keep=3).load_latest()
    assert loaded is not None and loaded.info.step == 20
    assert len(loaded.problems) == 1
    assert "step-000000030.pt" in loaded.problems[0] and reported in loaded.problems[0]


def test_damaged_checkpoint_is_quarantined_not_deleted_on_next_save(tmp_path: Path) -> None:
    store = _filled(tmp_path)
    newest = store.directory / "step-000000030.pt"
    newest.write_bytes(b"garbage")
    store = CheckpointStore(store.directory, keep=3)
    assert store.load_latest().info.step == 20  # type: ignore[union-attr]
    store.save(_state(9), step=21, segment=4)
    assert (store.directory / "step-000000030.pt.corrupt").read_bytes() == b"garbage"
    assert [e.step for e in store.entries()] == [10, 20, 21]


def test_half_written_manifest_falls_back_to_scanning_files(tmp_path: Path) -> None:
    store = _filled(tmp_path)
    text = store.manifest_path.read_text()
    store.manifest_path.write_text(text[: len(text) // 2])
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 30
    assert "manifest.json is damaged" in loaded.problems[0]
    assert "without a hash check" in loaded.problems[1]


def test_manifest_pointing_to_missing_file(tmp_path: Path) -> None:
    store = _filled(tmp_path)
    doc = json.loads(store.manifest_path.read_text())
    doc["checkpoints"].append({**doc["checkpoints"][-1], "file": "step-000000099.pt", "step": 99})
    store.manifest_path.write_text(json.dumps(doc))
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 30
    assert "step-000000099.pt is missing" in loaded.problems[0]


def test_foreign_files_are_left_alone(tmp_path: Path) -> None:
    store = _filled(tmp_path, keep=2)
    (store.directory / "notes.txt").write_text("mine")
    (store.directory / "model-best.pt").write_bytes(b"x")
    store.save(_state(5), step=50, segment=5)
    assert (store.directory / "notes.txt").read_text() == "mine"
    assert (store.directory / "model-best.pt").exists()


def test_no_good_checkpoint_is_a_clear_error_and_nothing_is_deleted(tmp_path: Path) -> None:
    store = _filled(tmp_path, count=2)
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


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_failed_save_keeps_previous_checkpoint(tmp_path: Path, code: int) -> None:
    def fault(label: str) -> None:
        if label == "checkpoint:before-fsync":
            raise OSError(code, "simulated")

    store = _filled(tmp_path, count=2)
    failing = CheckpointStore(store.directory, keep=3, fault=fault)
    with pytest.raises(SaveError) as info:
        failing.save(_state(7), step=70, segment=7)
    assert "The previous checkpoint (step 20) is intact" in str(info.value)
    assert ("disk is full" if code == errno.ENOSPC else "permission denied") in str(info.value)
    assert not [p for p in store.directory.iterdir() if p.name.startswith(".")]
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 20 and loaded.problems == []


def test_crash_between_manifest_and_retention_is_cleaned_up(tmp_path: Path) -> None:
    def fault(label: str) -> None:
        if label == "manifest:written":
            raise KeyboardInterrupt  # stands for a kill at that instant

    store = _filled(tmp_path, count=2, keep=2)
    with pytest.raises(KeyboardInterrupt):
        CheckpointStore(store.directory, keep=2, fault=fault).save(_state(3), step=30, segment=3)
    assert (store.directory / "step-000000010.pt").exists()  # not yet deleted
    store.save(_state(4), step=40, segment=4)
    store.wait_for_cleanup()
    assert sorted(p.name for p in store.directory.glob("step-*")) == [
        "step-000000030.pt",
        "step-000000040.pt",
    ]


@contextmanager
def _tmpfs(where: Path, *options: str, skip_why: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``where`` (needs root; the test is skipped without it)."""
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", *(["-o", ",".join(options)] if options else []), "tmpfs", str(where)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root); {skip_why}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_real_full_disk(tmp_path: Path) -> None:
    """On a real tiny file system when one can be mounted (root); else the fault injection above covers it."""
    with _tmpfs(tmp_path / "tiny", "size=256k", skip_why="ENOSPC is covered by fault injection") as mnt:
        store = CheckpointStore(mnt / "ckpt", keep=2)
        store.save({"w": torch.zeros(1000)}, step=1, segment=0)
        with pytest.raises(SaveError, match="disk is full"):
            store.save({"w": torch.zeros(200_000)}, step=2, segment=0)
        loaded = store.load_latest()
        assert loaded is not None and loaded.info.step == 1
        del loaded  # its tensors map the file


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_known_hash_verifies(tmp_path: Path, algorithm: str) -> None:
    """Checkpoints keep the hash they were written with (the manifest says which): older runs
    hashed with blake3, or sha256 where neither package is installed, still verify."""
    if algorithm != "sha256":
        pytest.importorskip({"xxh3_128": "xxhash", "blake3": "blake3"}[algorithm])
    store = CheckpointStore(tmp_path / "ckpt", keep=3)
    store.algorithm = algorithm
    store.save(_state(1), step=1, segment=0)
    store.save(_state(2), step=2, segment=0)
    assert [e.algorithm for e in store.entries()] == [algorithm, algorithm]
    newest = store.directory / "step-000000002.pt"
    data = bytearray(newest.read_bytes())
    data[-100] ^= 1
    newest.write_bytes(bytes(data))
    loaded = CheckpointStore(store.directory).load_latest()
    assert loaded is not None and loaded.info.step == 1
    assert f"fails its {algorithm} check" in loaded.problems[0]


def test_new_checkpoints_use_the_fastest_installed_hash() -> None:
    pytest.importorskip("xxhash")
    assert default_algorithm() == "xxh3_128"


def test_hash_whose_package_is_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "blake3", None)  # import blake3 now raises ImportError
    with pytest.raises(BatcherError, match="pip install blake3"):
        new_hash("blake3")
    with pytest.raises(BatcherError, match="unknown checkpoint hash 'md5'"):
        new_hash("md5")


def test_read_only_folder_is_named_in_the_error(tmp_path: Path) -> None:
    """torch's writer only says 'file cannot be opened'; the store reports the real cause."""
    with _tmpfs(tmp_path / "ro", skip_why="no read-only file system to test on") as mnt:
        store = CheckpointStore(mnt / "ckpt", keep=2)
        store.save({"w": torch.zeros(10)}, step=1, segment=0)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(SaveError, match="read-only") as info:
            store.save({"w": torch.ones(10)}, step=2, segment=0)
        assert "The previous checkpoint (step 1) is intact" in str(info.value)
        loaded = store.load_latest()
        assert loaded is not None and loaded.info.step == 1
        del loaded


def _sharded(store: CheckpointStore, step: int, payload: bytes) -> None:
    tmp = store.prepare_sharded(step)
    (tmp / "__0_0.distcp").write_bytes(payload)
    (tmp / "__1_0.distcp").write_bytes(payload[::-1])
    store.commit_sharded({"format": 1, "objects": {"w": torch.full((4,), float(step))}}, step=step, segment=0)


def test_sharded_folder_is_committed_verified_and_retained_like_a_file(tmp_path: Path) -> None:
    """A torch.distributed.checkpoint folder: every file hashed, damage in one shard detected."""
    store = CheckpointStore(tmp_path / "ckpt", keep=2)
    for step in (1, 2, 3):
        _sharded(store, step, bytes([step]) * 1000)
    store.wait_for_cleanup()
    assert sorted(p.name for p in store.directory.iterdir()) == [
        "manifest.json",
        "step-000000002.dcp",
        "step-000000003.dcp",
    ]
    loaded = store.load_latest()
    assert (
        loaded is not None
        and loaded.info.step == 3
        and loaded.info.size == 2000 + (store.directory / "step-000000003.dcp" / "rest.pt").stat().st_size
    )
    assert loaded.state["sharded_dir"] == str(store.directory / "step-000000003.dcp")
    del loaded
    shard = store.directory / "step-000000003.dcp" / "__1_0.distcp"
    shard.write_bytes(b"\x00" + shard.read_bytes()[1:])  # same size, one byte changed
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 2
    assert "step 3" in loaded.problems[0] and "fails its" in loaded.problems[0]
    del loaded
    _sharded(store, 4, b"x" * 10)  # the damaged folder is set aside, never deleted
    store.wait_for_cleanup()
    assert (store.directory / "step-000000003.dcp.corrupt" / "__1_0.distcp").exists()


def test_crash_before_a_sharded_commit_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ckpt", keep=2)
    _sharded(store, 1, b"a" * 100)

    def fault(label: str) -> None:
        if label == "checkpoint:before-rename":
            raise KeyboardInterrupt  # stands for a kill at that instant

    crashing = CheckpointStore(store.directory, keep=2, fault=fault)
    with pytest.raises(KeyboardInterrupt):
        _sharded(crashing, 2, b"b" * 100)
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 1 and loaded.problems == []
    del loaded
    _sharded(store, 3, b"c" * 100)  # and the next save goes on normally
    assert [e.step for e in store.entries()] == [1, 3]


def test_save_drops_the_kept_checkpoints_cache_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before writing, the store drops the cached pages of the checkpoints it keeps (so the
    writer gets just-freed memory); their data stays on disk and still loads."""
    import batcher.store

    store = _filled(tmp_path, count=2, keep=3)
    dropped: list[str] = []
    real = batcher.store.drop_cached
    monkeypatch.setattr(batcher.store, "drop_cached", lambda p: (dropped.append(p.name), real(p)))
    store.save(_state(3), step=30, segment=3)
    assert dropped == ["step-000000010.pt", "step-000000020.pt"]
    for entry in store.entries():
        assert store.verify(entry) is None


def test_drop_cached_is_harmless(tmp_path: Path) -> None:
    from batcher.files import drop_cached

    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100_000)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a").write_bytes(b"a")
    drop_cached(f)
    drop_cached(tmp_path / "dir")
    drop_cached(tmp_path / "missing")
    assert f.read_bytes() == b"x" * 100_000 and (tmp_path / "dir" / "a").read_bytes() == b"a"


def test_hash_thread_does_not_race_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is hashed on a thread while it is fsynced and renamed; a thread slow to start
    (here: 0.3 s before it reads) must still hash the file, not fail on its temporary name."""
    import time

    import batcher.files

    real = batcher.files.new_hash

    def slow_new_hash(algorithm: str) -> object:
        time.sleep(0.3)
        return real(algorithm)

    monkeypatch.setattr(batcher.files, "new_hash", slow_new_hash)
    store = CheckpointStore(tmp_path / "ckpt")
    info = store.save(_state(1), step=1, segment=0)
    monkeypatch.setattr(batcher.files, "new_hash", real)
    assert store.verify(info) is None
