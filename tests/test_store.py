from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import checkpoint_state, filled_store

from batcher.ckpt.store import CheckpointStore
from batcher.errors import NoUsableCheckpointError, SaveError
from batcher.run.atomic_files import PART_CHUNK, file_digest, new_hash, part_digests, parts_digest


def test_round_trip_and_keep_last_k(tmp_path: Path) -> None:
    store = filled_store(tmp_path, count=4, keep=2)
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


def test_damaged_checkpoint_is_quarantined_not_deleted_on_next_save(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    newest = store.directory / "step-000000030.pt"
    newest.write_bytes(b"garbage")
    store = CheckpointStore(store.directory, keep=3)
    assert store.load_latest().info.step == 20  # type: ignore[union-attr]
    store.save(checkpoint_state(9), step=21, segment=4)
    assert (store.directory / "step-000000030.pt.corrupt").read_bytes() == b"garbage"
    assert [e.step for e in store.entries()] == [10, 20, 21]


def test_foreign_files_are_left_alone(tmp_path: Path) -> None:
    store = filled_store(tmp_path, keep=2)
    (store.directory / "notes.txt").write_text("mine")
    (store.directory / "model-best.pt").write_bytes(b"x")
    store.save(checkpoint_state(5), step=50, segment=5)
    assert (store.directory / "notes.txt").read_text() == "mine"
    assert (store.directory / "model-best.pt").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_failed_save_keeps_previous_checkpoint(tmp_path: Path, code: int) -> None:
    def fault(label: str) -> None:
        if label == "checkpoint:before-fsync":
            raise OSError(code, "simulated")

    store = filled_store(tmp_path, count=2)
    failing = CheckpointStore(store.directory, keep=3, fault=fault)
    with pytest.raises(SaveError) as info:
        failing.save(checkpoint_state(7), step=70, segment=7)
    assert "The previous checkpoint (step 20) is intact" in str(info.value)
    assert ("disk is full" if code == errno.ENOSPC else "permission denied") in str(info.value)
    assert not [p for p in store.directory.iterdir() if p.name.startswith(".")]
    loaded = store.load_latest()
    assert loaded is not None and loaded.info.step == 20 and loaded.problems == []


def test_crash_between_manifest_and_retention_is_cleaned_up(tmp_path: Path) -> None:
    def fault(label: str) -> None:
        if label == "manifest:written":
            raise KeyboardInterrupt  # stands for a kill at that instant

    store = filled_store(tmp_path, count=2, keep=2)
    with pytest.raises(KeyboardInterrupt):
        CheckpointStore(store.directory, keep=2, fault=fault).save(checkpoint_state(3), step=30, segment=3)
    assert (store.directory / "step-000000010.pt").exists()  # not yet deleted
    store.save(checkpoint_state(4), step=40, segment=4)
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
    import batcher.ckpt.store

    store = filled_store(tmp_path, count=2, keep=3)
    dropped: list[str] = []
    real = batcher.ckpt.store.drop_cached
    monkeypatch.setattr(batcher.ckpt.store, "drop_cached", lambda p: (dropped.append(p.name), real(p)))
    store.save(checkpoint_state(3), step=30, segment=3)
    assert dropped == ["step-000000010.pt", "step-000000020.pt"]
    for entry in store.entries():
        assert store.verify(entry) is None


def test_drop_cached_is_harmless(tmp_path: Path) -> None:
    from batcher.run.atomic_files import drop_cached

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

    import batcher.run.atomic_files

    real = batcher.run.atomic_files.new_hash

    def slow_new_hash(algorithm: str) -> object:
        time.sleep(0.3)
        return real(algorithm)

    monkeypatch.setattr(batcher.run.atomic_files, "new_hash", slow_new_hash)
    store = CheckpointStore(tmp_path / "ckpt")
    info = store.save(checkpoint_state(1), step=1, segment=0)
    monkeypatch.setattr(batcher.run.atomic_files, "new_hash", real)
    assert store.verify(info) is None


def test_a_failed_save_leaves_no_hash_thread_reading_a_closed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash runs on a thread while the file is fsynced; a save failing meanwhile must join it
    before closing the file. (A thread left reading a closed descriptor reads whatever file gets
    its number next: the next verification of the previous checkpoint then saw a wrong digest.)"""
    import threading
    import time

    import batcher.ckpt.store

    real = batcher.ckpt.store.stream_digest

    def slow_digest(f: Any, algorithm: str) -> str:
        time.sleep(0.3)
        return real(f, algorithm)

    monkeypatch.setattr(batcher.ckpt.store, "stream_digest", slow_digest)

    def fault(label: str) -> None:
        if label == "checkpoint:before-fsync":
            raise OSError(errno.ENOSPC, "simulated")

    with pytest.raises(SaveError):
        CheckpointStore(tmp_path / "ckpt", fault=fault).save(checkpoint_state(1), step=1, segment=0)
    assert not [t for t in threading.enumerate() if t.name == "batcher-hash"]


def test_each_rank_hashes_only_the_shards_it_reads_and_the_ranks_agree(tmp_path: Path) -> None:
    """``scope``: the files a rank reads; ``agree``: the ranks' combined verdict (here rank 1's
    verdicts, recorded first, stand in for the all-reduce). A shard damaged for rank 1 only is
    skipped by both ranks, rank 0 without ever hashing it."""
    store = CheckpointStore(tmp_path / "ckpt", keep=2)
    for step in (1, 2):
        _sharded(store, step, bytes([step]) * 1000)
    newest = store.directory / "step-000000002.dcp"
    info = store.entries()[-1]
    assert info.parts is not None and sorted(info.parts) == ["__0_0.distcp", "__1_0.distcp", "rest.pt"]
    assert info.digest == parts_digest(part_digests(newest, info.algorithm, info.chunk), info.algorithm)
    shard = newest / "__1_0.distcp"
    shard.write_bytes(b"\x00" + shard.read_bytes()[1:])

    def reads(rank: int) -> Callable[[Path], dict[str, list[tuple[int, int]] | None]]:
        return lambda folder: {"rest.pt": None, f"__{rank}_0.distcp": [(0, 10), (500, 500)]}

    alone = CheckpointStore(store.directory).load_latest(scope=reads(0))
    assert alone is not None and alone.info.step == 2 and not alone.problems  # rank 0 reads a good shard
    del alone
    verdicts: list[bool] = []
    one = CheckpointStore(store.directory).load_latest(
        scope=reads(1), agree=lambda ok: verdicts.append(ok) or ok
    )
    assert one is not None and one.info.step == 1 and "__1_0.distcp fails its" in one.problems[0]
    del one
    zero = CheckpointStore(store.directory).load_latest(
        scope=reads(0), agree=lambda ok: ok and verdicts.pop(0)
    )
    assert zero is not None and zero.info.step == 1
    assert zero.problems == [
        "skipping checkpoint step 2: another rank found it damaged (see that rank's warning)"
    ]
    del zero
    (newest / "extra").write_bytes(b"")  # same size; a file the manifest does not list
    shard.write_bytes(bytes([2]) * 1000)  # repaired
    extra = CheckpointStore(store.directory).load_latest(scope=reads(0))
    assert extra is not None and extra.info.step == 1 and "the manifest lists" in extra.problems[0]
    del extra


def test_a_sharded_checkpoint_listed_without_its_files_is_hashed_whole(tmp_path: Path) -> None:
    """Manifests written before ``parts`` existed: their folder digest (each file's name and whole
    digest) still verifies, for files longer than a piece too."""
    store = CheckpointStore(tmp_path / "ckpt")
    _sharded(store, 1, b"a" * (PART_CHUNK + 1))
    folder = store.directory / "step-000000001.dcp"
    doc = json.loads(store.manifest_path.read_text())
    entry = doc["checkpoints"][0]
    del entry["parts"], entry["chunk"]
    h = new_hash(entry["algorithm"])  # the digest as written before parts existed
    for f in sorted(folder.iterdir()):
        h.update(f"{f.name}\0{file_digest(f, entry['algorithm'])}\n".encode())
    entry["digest"] = h.hexdigest()
    store.manifest_path.write_text(json.dumps(doc))
    loaded = CheckpointStore(store.directory).load_latest(scope=lambda folder: {"rest.pt": None})
    assert loaded is not None and loaded.info.step == 1 and not loaded.problems
    del loaded
    (folder / "__1_0.distcp").write_bytes(b"b" * (PART_CHUNK + 1))
    with pytest.raises(NoUsableCheckpointError, match="fails its"):
        CheckpointStore(store.directory).load_latest(scope=lambda folder: {"rest.pt": None})
