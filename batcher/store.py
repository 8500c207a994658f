"""The checkpoint store: atomic, verified, keep-last-K checkpoint files with a manifest written last.

Layout of ``<run>/ckpt/``::

    step-000000123.pt    torch.save zip of the whole state, written tmp -> fsync -> rename
    manifest.json        {"format": 1, "checkpoints": [{file, step, segment, digest, algorithm, size, ...}]}

A checkpoint exists only once the manifest names it; the manifest is replaced atomically after
the file is durable. Loading checks size and digest (xxh3_128; see
:func:`batcher.files.default_algorithm`) before anything loaded is trusted; ``torch.load(weights_only=True)`` cannot run code.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from batcher.errors import BatcherError, NoUsableCheckpointError
from batcher.files import (
    FaultHook,
    _atomic_file,
    _no_fault,
    _save_error,
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
    remove_path,
    stream_digest,
    temp_path,
)

__all__ = [
    "CheckpointInfo",
    "CheckpointStore",
    "LoadedCheckpoint",
    "atomic_write_bytes",
    "checkpoint_digest",
    "file_digest",
    "fsync_dir",
]

MANIFEST = "manifest.json"
REST = "rest.pt"  # in a sharded checkpoint folder: everything but the sharded objects
FORMAT = 1
# step-<step>.pt, or step-<step>.<n>.pt for the n-th later save at the same step (the end of
# an epoch after its last batch, or the final save of seg.done(), adds no step)
_NAME = re.compile(r"^step-(\d{9,})(?:\.(\d+))?\.(?:pt|dcp)$")
_TMP = re.compile(r"^\.(.+)\.tmp-(\d+)$")
_FULL_BELOW = 4 << 20  # free bytes under which a failed write means a full disk

#: puts a loaded state into the live objects (see :meth:`CheckpointStore.load_latest`)
Apply = Callable[[dict[str, Any], "CheckpointInfo"], None]


@dataclass(frozen=True)
class CheckpointInfo:
    """One entry of the manifest."""

    file: str
    step: int
    segment: int
    digest: str
    size: int
    created: float
    save_s: float = 0.0
    algorithm: str = "sha256"


@dataclass
class LoadedCheckpoint:
    """What :meth:`CheckpointStore.load_latest` found: the state, its entry, and what was wrong."""

    state: dict[str, Any]
    info: CheckpointInfo
    problems: list[str] = field(default_factory=list)


def _order(name: str) -> tuple[int, int]:
    """(step, n) of a checkpoint name: the order in which the saves were made."""
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (-1, -1)


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


class CheckpointStore:
    """Keep the last ``keep`` checkpoints of one run in ``directory``.

    >>> store = CheckpointStore(Path("runs/exp/ckpt"), keep=2)   # doctest: +SKIP
    >>> store.save({"model": model.state_dict()}, step=100, segment=0)   # doctest: +SKIP
    >>> store.load_latest().state["model"]   # doctest: +SKIP
    """

    def __init__(self, directory: Path | str, *, keep: int = 2, fault: FaultHook = _no_fault) -> None:
        if keep < 1:
            raise BatcherError(f"keep must be at least 1 (the newest checkpoint), got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.algorithm = default_algorithm()
        self._fault = fault
        self._bad: set[str] = set()
        self._cleanup: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def _read_manifest(self) -> tuple[list[CheckpointInfo] | None, str | None]:
        """Return (entries, problem); entries is None when the manifest is missing or unreadable."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"cannot read {self.manifest_path}: {exc}"
        try:
            doc = json.loads(raw)
            if doc.get("format") != FORMAT:
                return None, f"{self.manifest_path} has unknown format {doc.get('format')!r}"
            entries = [CheckpointInfo(**e) for e in doc["checkpoints"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return None, f"{self.manifest_path} is damaged ({type(exc).__name__}: {exc})"
        return sorted(entries, key=lambda e: (e.step, _order(e.file)[1])), None

    def entries(self) -> list[CheckpointInfo]:
        """Return the manifest's checkpoints, oldest first (empty when there is no readable manifest)."""
        entries, _ = self._read_manifest()
        return entries or []

    def _files_on_disk(self) -> list[str]:
        try:
            return sorted((p.name for p in self.directory.iterdir() if _NAME.match(p.name)), key=_order)
        except FileNotFoundError:
            return []

    def _free_name(self, step: int, ext: str) -> str:
        """The name of a new checkpoint of ``step``: ``step-<step>.<ext>``, or with ``.<n>``
        before the extension when a checkpoint of that step exists (a save that added no step).

        An unlisted file of that name (a save that crashed before its manifest) is replaced; without
        a readable manifest every file is kept, as it may be the only good state left.
        """
        entries, _ = self._read_manifest()
        taken = {e.file for e in entries} if entries is not None else set(self._files_on_disk())
        base, n = f"step-{step:09d}", 0
        while (name := f"{base}.{ext}" if n == 0 else f"{base}.{n}.{ext}") in taken:
            n += 1
        return name

    def verify(self, info: CheckpointInfo) -> str | None:
        """Return None when the file matches its entry, else what is wrong with it."""
        path = self.directory / info.file
        bad = self._check_size(info)
        if bad:
            return bad
        digest = checkpoint_digest(path, info.algorithm)
        if digest != info.digest:
            return (
                f"{path} fails its {info.algorithm} check (file {digest[:12]}…, manifest {info.digest[:12]}…)"
            )
        return None

    def _load_file(self, path: Path) -> dict[str, Any]:
        sharded = path.is_dir()
        state = torch.load(path / REST if sharded else path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a torch-batcher state dict")
        if sharded:
            state["sharded_dir"] = str(path)  # the shards are read by torch.distributed.checkpoint
        return state

    def load_latest(self, apply: Apply | None = None) -> LoadedCheckpoint | None:
        """Return the newest checkpoint that passes its checks, None when the run has none.

        A damaged newer checkpoint is skipped and reported in ``problems``; when checkpoints
        exist but none is good, :class:`NoUsableCheckpointError` is raised and nothing is touched.

        ``apply(state, info)``, if given, puts the state into the live objects while the file's
        hash is computed on another thread (the two passes overlap). A checkpoint that then
        fails its hash is reported and the next older one is applied over it; an error that
        ``apply`` raises for a verified file (a real mismatch) propagates.
        """
        entries, problem = self._read_manifest()
        problems: list[str] = [problem] if problem else []
        on_disk = self._files_on_disk()
        verified = True
        if entries is None:
            if not on_disk:
                if problem:
                    raise NoUsableCheckpointError(self._none_good_message([problem]))
                return None
            problems.append(
                f"no readable manifest in {self.directory}; trying the {len(on_disk)} checkpoint "
                "file(s) found there, newest first, without a hash check"
            )
            entries = []
            for name in on_disk:
                m = _NAME.match(name)
                assert m is not None
                st = (self.directory / name).stat()
                size = checkpoint_size(self.directory / name)
                entries.append(CheckpointInfo(name, int(m.group(1)), -1, "", size, st.st_mtime))
            verified = False
        elif not entries:
            return None
        for info in reversed(entries):
            path = self.directory / info.file
            bad = self._check_size(info) if verified else None
            if bad:
                problems.append(f"skipping checkpoint step {info.step}: {bad}")
                self._bad.add(info.file)
                continue
            with ThreadPoolExecutor(1) as pool:
                digest = pool.submit(checkpoint_digest, path, info.algorithm) if verified else None
                error: BaseException | None = None
                try:
                    state = self._load_file(path)
                    if apply is not None:
                        apply(state, info)
                except Exception as exc:  # torch raises many types for a damaged or hostile file
                    error = exc
                if digest is not None and digest.result() != info.digest:
                    problems.append(
                        f"skipping checkpoint step {info.step}: {path} fails its {info.algorithm} check "
                        f"(file {digest.result()[:12]}…, manifest {info.digest[:12]}…)"
                    )
                    self._bad.add(info.file)
                    continue
            if isinstance(error, BatcherError):
                raise error  # the file is sound; it does not fit the objects
            if error is not None:
                problems.append(
                    f"skipping checkpoint {path}: cannot load it ({type(error).__name__}: {error})"
                )
                self._bad.add(info.file)
                continue
            return LoadedCheckpoint(state, info, problems)
        raise NoUsableCheckpointError(self._none_good_message(problems))

    def _check_size(self, info: CheckpointInfo) -> str | None:
        path = self.directory / info.file
        try:
            size = checkpoint_size(path)
        except FileNotFoundError:
            return f"{path} is missing"
        if size != info.size:
            return f"{path} has {size} bytes, the manifest says {info.size} (truncated or replaced)"
        return None

    def _none_good_message(self, problems: list[str]) -> str:
        run = self.directory.parent
        lines = "\n  - ".join(problems)
        return (
            f"no usable checkpoint in {self.directory}:\n  - {lines}\n"
            f"Nothing was deleted. To start this run from scratch, move it aside "
            f"(mv {run} {run}.broken); to recover, copy a good checkpoint file back into "
            f"{self.directory} and remove {MANIFEST} so the files are scanned."
        )

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
            raise _save_error("checkpoint folder", self.directory, exc, "No checkpoint was changed.") from exc
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
        # (the pool exits first: its thread is done with the file before the file is closed)
        with ExitStack() as files, ThreadPoolExecutor(1) as pool:
            with atomic_path(path, fault=self._fault, keep_note=keep_note, what="checkpoint") as tmp:
                _torch_save(state, tmp)
                self._fault("checkpoint:written")
                # Hash (reading the page cache) while the kernel writes the same file to disk.
                # Opened here, not on the thread: atomic_path renames tmp as soon as it is fsynced.
                reader = files.enter_context(open(tmp, "rb", buffering=0))
                digest = pool.submit(stream_digest, reader, self.algorithm)
                size = os.fstat(reader.fileno()).st_size
            hexdigest = digest.result()
        return self._commit(name, step, segment, hexdigest, size, t0, previous, keep_note)

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
            raise _save_error("checkpoint folder", self.directory, exc, self.keep_note(step)) from exc
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
            digest, size = checkpoint_digest(tmp, self.algorithm), checkpoint_size(tmp)
        return self._commit(name, step, segment, digest, size, t0, previous, keep_note)

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
        doc = {"format": FORMAT, "checkpoints": [asdict(e) for e in entries]}
        data = (json.dumps(doc, indent=1) + "\n").encode()
        with _atomic_file(self.manifest_path, self._fault, keep_note, "manifest") as f:
            f.write(data)

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
