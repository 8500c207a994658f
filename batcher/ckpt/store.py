"""The checkpoint store: atomic, verified, keep-last-K checkpoint files with a manifest written last.

Layout of ``<run>/ckpt/``::

    step-000000123.pt    torch.save zip of the whole state, written tmp -> fsync -> rename
    manifest.json        {"format": 1, "checkpoints": [{file, step, segment, digest, algorithm, size, ...}]}

A checkpoint exists only once the manifest names it; the manifest is replaced atomically after
the file is durable. Loading checks size and digest (xxh3_128; see
:func:`batcher.run.atomic_files.default_algorithm`) before anything loaded is trusted; ``torch.load(weights_only=True)`` cannot run code.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from batcher.ckpt.manifest import (
    REST,
    CheckpointInfo,
    new_checkpoint_name,
    write_manifest,
)
from batcher.ckpt.reading import CheckpointReader, LoadedCheckpoint
from batcher.errors import BatcherError
from batcher.run.atomic_files import (
    PART_CHUNK,
    FaultHook,
    atomic_path,
    atomic_write_bytes,
    checkpoint_digest,
    checkpoint_size,
    default_algorithm,
    drop_cached,
    file_digest,
    files_of,
    fsync_dir,
    fsync_path,
    no_fault,
    part_digests,
    parts_digest,
    remove_path,
    save_error,
    stream_digest,
    temp_path,
)
from batcher.run.background import Background

__all__ = [
    "CheckpointInfo",
    "CheckpointStore",
    "LoadedCheckpoint",
    "atomic_write_bytes",
    "checkpoint_digest",
    "file_digest",
    "fsync_dir",
]

_TMP = re.compile(r"^\.(.+)\.tmp-(\d+)$")
_FULL_BELOW = 4 << 20  # free bytes under which a failed write means a full disk


def _torch_save(state: dict[str, Any], tmp: Path) -> None:
    """``torch.save`` to a file name: torch's C++ writer, much faster than a Python file object.

    torch creates the file itself. (Creating it first would make torch's open truncate an
    existing file, and ext4's replace-by-truncate heuristic, auto_da_alloc, then flushes the
    whole file in close(): a 1 GB save took twice as long here.)

    That writer reports a failed write as a bare RuntimeError; turn it back into the OSError a
    user can act on: a full disk is recognised by the space left on it, a missing or read-only
    folder by opening the file the way torch did.
    """
    try:
        torch.save(state, str(tmp))
    except RuntimeError as exc:
        try:
            st = os.statvfs(tmp.parent)
            full = st.f_bavail * st.f_frsize < _FULL_BELOW
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
        with open(tmp, "ab"):  # raises the real error (ENOENT, EACCES, EROFS, ...) if there is one
            pass
        raise OSError(errno.EIO, f"torch.save failed: {exc}") from exc


class CheckpointStore(CheckpointReader):
    """Keep the last ``keep`` checkpoints of one run in ``directory``; reading (verify before
    trust) is :class:`~batcher.ckpt.reading.CheckpointReader`'s.

    >>> store = CheckpointStore(Path("runs/exp/ckpt"), keep=2)   # doctest: +SKIP
    >>> store.save({"model": model.state_dict()}, step=100, segment=0)   # doctest: +SKIP
    >>> store.load_latest().state["model"]   # doctest: +SKIP
    """

    def __init__(self, directory: Path | str, *, keep: int = 2, fault: FaultHook = no_fault) -> None:
        if keep < 1:
            raise BatcherError(f"keep must be at least 1 (the newest checkpoint), got {keep}")
        super().__init__(directory)
        self.keep = keep
        self.algorithm = default_algorithm()
        self._fault = fault
        self._cleanup: threading.Thread | None = None

    # -- writing -------------------------------------------------------------------------------
    def save(self, state: dict[str, Any], *, step: int, segment: int) -> CheckpointInfo:
        """Write ``state`` as the checkpoint of ``step`` and return its manifest entry.

        Order: temp file -> fsync -> rename -> fsync dir -> manifest (same way) -> delete old ones.
        A crash at any point leaves the previous checkpoint listed and intact.
        """
        t0 = time.perf_counter()
        self.wait_for_cleanup()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise save_error("checkpoint folder", self.directory, exc, "No checkpoint was changed.") from exc
        self._remove_stale_temps()
        previous, keep_note = self._previous(step)
        name = self._free_name(step, "pt")
        path = self.directory / name
        # The kept checkpoints' cached pages are of no use to this process (it restored from
        # them long ago). Dropping them just before writing hands the writer memory the kernel
        # has just freed; on a VM that returns long-free memory to its host (virtio-balloon
        # free page reporting) writing 1 GB into such memory took 1.5 s longer here.
        for old in previous:
            drop_cached(self.directory / old.file)
        with ExitStack() as files:
            with atomic_path(path, fault=self._fault, keep_note=keep_note, what="checkpoint") as tmp:
                _torch_save(state, tmp)
                self._fault("checkpoint:written")
                # Hash (reading the page cache) while the kernel writes the same file to disk.
                # Opened here, not on the thread: atomic_path renames tmp as soon as it is fsynced.
                reader = files.enter_context(open(tmp, "rb", buffering=0))
                digest = Background(stream_digest, reader, self.algorithm, name="batcher-hash")
                # joined before the file is closed, on every path: a thread still reading a closed
                # descriptor would read from whatever file reuses its number next
                files.callback(digest.join)
                size = os.fstat(reader.fileno()).st_size
            hexdigest = digest.result()
        return self._commit(name, step, segment, hexdigest, size, t0, previous, keep_note)

    def _free_name(self, step: int, ext: str) -> str:
        """The name of a new checkpoint of ``step``: ``step-<step>.<ext>``, or with ``.<n>``
        before the extension when a checkpoint of that step exists (a save that added no step).

        An unlisted file of that name (a save that crashed before its manifest) is replaced; without
        a readable manifest every file is kept, as it may be the only good state left.
        """
        entries, _ = self._read_manifest()
        taken = {e.file for e in entries} if entries is not None else set(self._files_on_disk())
        return new_checkpoint_name(step, ext, taken)

    def _previous(self, step: int) -> tuple[list[CheckpointInfo], str]:
        previous, _ = self._read_manifest()
        previous = [e for e in (previous or []) if e.file not in self._bad and e.step <= step]
        keep_note = (
            f"The previous checkpoint (step {previous[-1].step}) is intact."
            if previous
            else "No earlier checkpoint existed."
        )
        return previous, keep_note

    def keep_note(self, step: int) -> str:
        """What a failed save of ``step`` leaves intact, for its error message."""
        return self._previous(step)[1]

    def _commit(
        self,
        name: str,
        step: int,
        segment: int,
        digest: str,
        size: int,
        t0: float,
        previous: list[CheckpointInfo],
        keep_note: str,
        parts: dict[str, list[str]] | None = None,
    ) -> CheckpointInfo:
        info = CheckpointInfo(
            file=name,
            step=step,
            segment=segment,
            digest=digest,
            algorithm=self.algorithm,
            size=size,
            created=time.time(),
            save_s=time.perf_counter() - t0,
            parts=parts,
            chunk=PART_CHUNK if parts is not None else 0,
        )
        entries = [*previous, info]
        kept, dropped = entries[-self.keep :], entries[: -self.keep]
        self._write_manifest(kept, keep_note)
        self._fault("manifest:written")
        self._quarantine_bad()
        # Deleting a big file takes the file system a while (0.75 s for 1 GB here); the new
        # checkpoint is already durable, so the loop goes on while old ones are removed. A kill
        # meanwhile leaves an unlisted file that the next save removes.
        self._cleanup = threading.Thread(
            target=self._remove_old, args=(dropped, kept), name="batcher-retention"
        )
        self._cleanup.start()
        return info

    # -- sharded checkpoints (torch.distributed.checkpoint) --------------------------------------
    def prepare_sharded(self, step: int) -> Path:
        """Create and return the temporary folder every rank writes its shards of ``step`` into."""
        self.wait_for_cleanup()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
            tmp = temp_path(self.directory / self._free_name(step, "dcp"))
            tmp.mkdir()
        except OSError as exc:
            raise save_error("checkpoint folder", self.directory, exc, self.keep_note(step)) from exc
        return tmp

    def commit_sharded(self, rest: dict[str, Any], *, step: int, segment: int) -> CheckpointInfo:
        """Make the shards that every rank wrote into :meth:`prepare_sharded`'s folder the
        checkpoint of ``step``.

        ``rest`` (everything but the sharded objects) goes in beside them; every file is fsynced
        and hashed, then the folder is renamed into place and listed in the manifest, exactly
        as a single-file checkpoint: a crash before the manifest leaves the previous one listed.
        """
        t0 = time.perf_counter()
        previous, keep_note = self._previous(step)
        name = self._free_name(step, "dcp")  # the name prepare_sharded gave the folder
        with atomic_path(
            self.directory / name, fault=self._fault, keep_note=keep_note, what="checkpoint"
        ) as tmp:
            _torch_save(rest, tmp / REST)
            for f in files_of(tmp):
                fsync_path(f)
            parts, size = part_digests(tmp, self.algorithm, PART_CHUNK), checkpoint_size(tmp)
        digest = parts_digest(parts, self.algorithm)
        return self._commit(name, step, segment, digest, size, t0, previous, keep_note, parts=parts)

    def wait_for_cleanup(self) -> None:
        """Wait until checkpoints dropped by the last :meth:`save` are deleted."""
        if self._cleanup is not None:
            self._cleanup.join()
            self._cleanup = None

    def _remove_old(self, dropped: list[CheckpointInfo], kept: list[CheckpointInfo]) -> None:
        try:
            for old in dropped:
                remove_path(self.directory / old.file)
                self._fault("retention:deleted-one")
            self._remove_orphans(kept)
        except OSError:
            pass  # left for the next save, which removes files the manifest no longer lists

    def _write_manifest(self, entries: list[CheckpointInfo], keep_note: str) -> None:
        write_manifest(self.directory, entries, keep_note=keep_note, fault=self._fault)

    def _remove_stale_temps(self) -> None:
        # Only one process holds the run lock, so any temp file of ours is a crash leftover.
        for p in self.directory.iterdir():
            if _TMP.match(p.name):
                remove_path(p)

    def _quarantine_bad(self) -> None:
        for name in sorted(self._bad):
            src = self.directory / name
            if src.exists():
                os.replace(src, src.with_name(name + ".corrupt"))
        self._bad.clear()

    def _remove_orphans(self, kept: list[CheckpointInfo]) -> None:
        # Files of our own naming that the manifest no longer lists: left behind by a crash
        # between the manifest write and the deletes, or renamed into place by a save that
        # crashed before its manifest (never committed). Only this process writes here.
        listed = {e.file for e in kept}
        for name in self._files_on_disk():
            if name not in listed:
                remove_path(self.directory / name)
