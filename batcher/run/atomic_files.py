"""Durable files without torch: atomic replacement, directory fsync, and content digests.

Used by the checkpoint store, the status and metric files, and the workflow's scripts (which
must not pay for importing torch).
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import io
import os
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from batcher.errors import BatcherError, SaveError

__all__ = [
    "ALGORITHMS",
    "PART_CHUNK",
    "atomic_file",
    "atomic_path",
    "atomic_write_bytes",
    "checkpoint_digest",
    "checkpoint_size",
    "chunk_digests",
    "default_algorithm",
    "drop_cached",
    "file_digest",
    "files_of",
    "fsync_dir",
    "fsync_path",
    "new_hash",
    "no_fault",
    "part_digests",
    "parts_digest",
    "pieces_holding",
    "remove_path",
    "save_error",
    "stream_digest",
    "temp_path",
]

_CHUNK = 8 << 20
#: the piece size of a sharded checkpoint's per-piece digests (see :func:`part_digests`)
PART_CHUNK = 16 << 20

#: a test hook: called with a label at each point where a crash would leave a distinct state
FaultHook = Callable[[str], None]


def no_fault(label: str) -> None:
    return None


def fsync_path(path: Path) -> None:
    """fsync a file (its data) or a folder (the renames inside it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fsync_path(path)


def drop_cached(path: Path) -> None:
    """Ask the kernel to drop the cached pages of a durable file or folder (its data stays on
    disk). Best effort: nothing happens where posix_fadvise is missing or the file is gone."""
    if not hasattr(os, "posix_fadvise"):
        return
    for f in files_of(path) if path.is_dir() else [path]:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def temp_path(path: Path) -> Path:
    """The temporary name this process writes ``path`` under before renaming it into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_path(path: Path) -> None:
    """Remove a file, or a folder with everything in it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def save_error(what: str, path: Path, exc: OSError, keep_note: str) -> SaveError:
    hint = {
        errno.ENOSPC: "the disk is full: free space or move the run folder to a larger disk",
        errno.EDQUOT: "the disk quota is exceeded: free space or raise the quota",
        errno.EACCES: "permission denied: make the folder writable (chmod u+w) or choose another",
        errno.EROFS: "the file system is read-only: choose a writable run folder",
    }.get(exc.errno or 0, "check that the folder exists and is writable")
    err = SaveError(f"could not write {what} {path}: {exc.strerror or exc}; {hint}. {keep_note}")
    err.errno = exc.errno
    return err


@contextmanager
def atomic_path(path: Path, *, fault: FaultHook = no_fault, keep_note: str, what: str) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; once the caller has written it, make it ``path``.

    After the body: fsync the file (or the folder, when the caller made one), rename it over
    ``path``, fsync the parent folder. On any error the temporary file or folder is removed and ``path`` is untouched; an ``OSError`` becomes a
    :class:`SaveError` that says what to do (``keep_note`` says what is still intact).
    """
    tmp = temp_path(path)
    try:
        yield tmp
        fault(f"{what}:before-fsync")
        fsync_path(tmp)
        fault(f"{what}:before-rename")
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        _discard(tmp)
        raise save_error(what, path, exc, keep_note) from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        remove_path(tmp)
    except OSError:
        pass


@contextmanager
def atomic_file(path: Path, fault: FaultHook, keep_note: str, what: str) -> Iterator[IO[bytes]]:
    with atomic_path(path, fault=fault, keep_note=keep_note, what=what) as tmp, open(tmp, "wb") as f:
        yield f


def atomic_write_bytes(path: Path, data: bytes, *, what: str = "file", fault: FaultHook = no_fault) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, fault, "The previous version is unchanged.", what) as f:
        f.write(data)


#: hashes a checkpoint can be verified with, fastest first (the store writes the first available)
ALGORITHMS = ("xxh3_128", "blake3", "sha256")
_PACKAGE = {"xxh3_128": "xxhash", "blake3": "blake3"}


def default_algorithm() -> str:
    """The hash new checkpoints get: ``xxh3_128`` (xxhash, ~8 GB/s on one core here), else
    ``blake3`` (~2.5 GB/s per core), else ``sha256`` (standard library).

    The digest guards against damage (a torn, truncated or bit-flipped file), not against
    someone who can also rewrite the manifest, so a fast non-cryptographic 128-bit hash is
    enough; it leaves the cores to the save's fsync and the load's copy that it overlaps.
    """
    for algorithm in ALGORITHMS[:-1]:
        try:
            __import__(_PACKAGE[algorithm])
        except ImportError:
            continue
        return algorithm
    return "sha256"


def new_hash(algorithm: str) -> Any:
    """Return a hashlib-style object for ``algorithm``."""
    if algorithm not in ALGORITHMS:
        raise BatcherError(
            f"unknown checkpoint hash {algorithm!r}; this torch-batcher knows {', '.join(ALGORITHMS)}"
        )
    if algorithm == "sha256":
        return hashlib.sha256()
    try:
        # By name: both packages are optional for reading old checkpoints, and an import by name
        # type-checks the same whether or not the package (or its stubs) is installed.
        module = importlib.import_module(_PACKAGE[algorithm])
    except ImportError as exc:
        raise BatcherError(
            f"this checkpoint was hashed with {algorithm}, whose package is not installed here: "
            f"pip install {_PACKAGE[algorithm]}"
        ) from exc
    return getattr(module, algorithm)()  # xxhash.xxh3_128(), blake3.blake3()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Return the hex digest of the file at ``path``."""
    with open(path, "rb", buffering=0) as f:
        return stream_digest(f, algorithm)


def stream_digest(f: io.RawIOBase, algorithm: str) -> str:
    """Return the hex digest of what is left to read in ``f`` (an unbuffered binary file).

    Read in 8 MB pieces into one reused buffer (a memory map saves little, and a file cut
    short meanwhile would kill the process with SIGBUS instead of failing the check). Taking an
    open file lets a caller hash on another thread a file it is about to rename.
    """
    h = new_hash(algorithm)
    buf = bytearray(_CHUNK)
    with memoryview(buf) as view:
        while n := f.readinto(buf):
            h.update(view[:n])
    return str(h.hexdigest())


def files_of(path: Path) -> list[Path]:
    """The files of a sharded checkpoint folder, in a fixed order."""
    return sorted(p for p in path.rglob("*") if p.is_file())


def checkpoint_size(path: Path) -> int:
    """Bytes of a checkpoint file, or of all files of a sharded checkpoint folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in files_of(path))
    return path.stat().st_size


def checkpoint_digest(path: Path, algorithm: str) -> str:
    """A checkpoint file's digest; for a folder, the digest of each file's name and digest."""
    if not path.is_dir():
        return file_digest(path, algorithm)
    h = new_hash(algorithm)  # the digest of folders listed without parts (see parts_digest)
    for f in files_of(path):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_digest(f, algorithm)}\n".encode())
    return str(h.hexdigest())


def part_digests(folder: Path, algorithm: str, chunk: int = PART_CHUNK) -> dict[str, list[str]]:
    """Each file of a sharded checkpoint folder: its name inside the folder, and the digests of
    its consecutive ``chunk``-byte pieces (a rank that reads a few items of a file verifies just
    the pieces holding them)."""
    return {f.relative_to(folder).as_posix(): chunk_digests(f, algorithm, chunk) for f in files_of(folder)}


def parts_digest(parts: Mapping[str, Sequence[str]], algorithm: str) -> str:
    """A folder's digest from its pieces' digests (:func:`part_digests`). The list is committed
    with the checkpoint, so each rank can check the pieces it reads against it."""
    h = new_hash(algorithm)
    for name in sorted(parts, key=lambda n: PurePosixPath(n).parts):  # the order of files_of
        h.update(f"{name}\0{' '.join(parts[name])}\n".encode())
    return str(h.hexdigest())


def pieces_holding(ranges: Collection[tuple[int, int]], chunk: int) -> set[int]:
    """The numbers of the ``chunk``-byte pieces that hold the (offset, length) byte ``ranges``."""
    return {i for off, n in ranges for i in range(off // chunk, (off + max(n, 1) - 1) // chunk + 1)}


def chunk_digests(path: Path, algorithm: str, chunk: int, pieces: Collection[int] | None = None) -> list[str]:
    """The digests of ``path``'s ``chunk``-byte pieces, all of them or (``pieces``) those numbered,
    in increasing order; a piece past the file's end is missing from the list."""
    out: list[str] = []
    buf = bytearray(min(chunk, _CHUNK))
    with open(path, "rb", buffering=0) as f, memoryview(buf) as view:
        size = os.fstat(f.fileno()).st_size
        for index in sorted(pieces) if pieces is not None else range(-(-size // chunk)):
            if index * chunk >= size:
                break
            f.seek(index * chunk)
            h, left = new_hash(algorithm), chunk
            while left and (n := f.readinto(view[: min(left, len(buf))])):
                h.update(view[:n])
                left -= n
            out.append(str(h.hexdigest()))
    return out
