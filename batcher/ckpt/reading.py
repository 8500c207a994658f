"""Reading a run's checkpoints: the newest one that passes its checks, verified before it is trusted.

Size and digest (the manifest's, see :mod:`batcher.ckpt.manifest`) are checked before a loaded state
is used, and ``torch.load(weights_only=True)`` cannot run code. A damaged newer checkpoint is
reported and the previous good one used; nothing is deleted when none is good.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from batcher.ckpt.manifest import (
    MANIFEST,
    REST,
    CheckpointInfo,
    checkpoint_order,
    is_checkpoint_name,
    read_manifest,
)
from batcher.errors import BatcherError, NoUsableCheckpointError
from batcher.run.atomic_files import (
    checkpoint_digest,
    checkpoint_size,
    chunk_digests,
    files_of,
    part_digests,
    parts_digest,
    pieces_holding,
)

__all__ = ["Agree", "Apply", "CheckpointReader", "LoadedCheckpoint", "Scope"]

_OTHER_RANK = "another rank found it damaged (see that rank's warning)"

#: puts a loaded state into the live objects (see :meth:`CheckpointStore.load_latest`)
Apply = Callable[[dict[str, Any], "CheckpointInfo"], None]
#: what this process reads of a sharded checkpoint folder: file name (inside the folder) -> the
#: (offset, length) byte ranges read, or None for the whole file
Scope = Callable[[Path], Mapping[str, Collection[tuple[int, int]] | None]]
#: every process's verdict on a checkpoint: True when all found it good (a collective)
Agree = Callable[[bool], bool]


@dataclass
class LoadedCheckpoint:
    """What :meth:`CheckpointStore.load_latest` found: the state, its entry, and what was wrong."""

    state: dict[str, Any]
    info: CheckpointInfo
    problems: list[str] = field(default_factory=list)


class CheckpointReader:
    """The checkpoints of one run in ``directory``, read and verified."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._bad: set[str] = set()  # files that failed their checks (set aside at the next save)

    # -- reading -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def _read_manifest(self) -> tuple[list[CheckpointInfo] | None, str | None]:
        return read_manifest(self.directory)

    def entries(self) -> list[CheckpointInfo]:
        """Return the manifest's checkpoints, oldest first (empty when there is no readable manifest)."""
        entries, _ = self._read_manifest()
        return entries or []

    def _files_on_disk(self) -> list[str]:
        try:
            names = (p.name for p in self.directory.iterdir() if is_checkpoint_name(p.name))
            return sorted(names, key=checkpoint_order)
        except FileNotFoundError:
            return []

    def verify(self, info: CheckpointInfo) -> str | None:
        """Return None when the file matches its entry, else what is wrong with it."""
        return self._check_size(info) or self._hash_problem(info, None)

    def _load_file(self, path: Path) -> dict[str, Any]:
        sharded = path.is_dir()
        state = torch.load(path / REST if sharded else path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a torch-batcher state dict")
        if sharded:
            state["sharded_dir"] = str(path)  # the shards are read by torch.distributed.checkpoint
        return state

    def load_latest(
        self, apply: Apply | None = None, *, scope: Scope | None = None, agree: Agree | None = None
    ) -> LoadedCheckpoint | None:
        """Return the newest checkpoint that passes its checks, None when the run has none.

        A damaged newer checkpoint is skipped and reported in ``problems``; when checkpoints
        exist but none is good, :class:`NoUsableCheckpointError` is raised and nothing is touched.

        ``apply(state, info)``, if given, puts the state into the live objects while the file's
        hash is computed on another thread (the two passes overlap). A checkpoint that then
        fails its hash is reported and the next older one is applied over it; an error that
        ``apply`` raises for a verified file (a real mismatch) propagates.

        Under torch.distributed, every rank calls this. ``scope(folder)`` tells what this rank
        read of a sharded folder (asked after ``apply``): only the pieces holding it (and the
        folder's piece list) are hashed here, the other ranks hash theirs. ``agree(ok)`` combines the ranks' verdicts, so a
        checkpoint that is damaged for any rank is skipped by all of them, together.
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
                st = (self.directory / name).stat()
                size = checkpoint_size(self.directory / name)
                entries.append(CheckpointInfo(name, checkpoint_order(name)[0], -1, "", size, st.st_mtime))
            verified = False
        elif not entries:
            return None
        everyone = agree or (lambda ok: ok)
        for info in reversed(entries):
            path = self.directory / info.file
            bad = self._check_size(info) if verified else None
            if not everyone(bad is None):  # before apply: its collectives need every rank
                problems.append(f"skipping checkpoint step {info.step}: {bad or _OTHER_RANK}")
                self._bad.add(info.file)
                continue
            # a sharded folder with its piece list: this rank's pieces are hashed after apply
            # (which tells what it read, and just read them: they are in the page cache)
            pieces = scope is not None and verified and info.parts is not None
            with ThreadPoolExecutor(1) as pool:
                whole = verified and not pieces
                checked = pool.submit(self._hash_problem, info, None) if whole else None
                error: BaseException | None = None
                try:
                    state = self._load_file(path)
                    if apply is not None:
                        apply(state, info)
                except Exception as exc:  # torch raises many types for a damaged or hostile file
                    error = exc
                bad = checked.result() if checked is not None else None
            if pieces and scope is not None:
                try:
                    bad = self._hash_problem(info, scope(path))
                except Exception as exc:  # a damaged metadata file, say
                    bad = f"{path}: cannot tell what this rank reads ({type(exc).__name__}: {exc})"
            if bad is None and error is not None and not isinstance(error, BatcherError):
                bad = f"{path}: cannot load it ({type(error).__name__}: {error})"
            if not everyone(bad is None):
                problems.append(f"skipping checkpoint step {info.step}: {bad or _OTHER_RANK}")
                self._bad.add(info.file)
                continue
            if error is not None:
                raise error  # a BatcherError: the file is sound; it does not fit the objects
            return LoadedCheckpoint(state, info, problems)
        raise NoUsableCheckpointError(self._none_good_message(problems))

    def _hash_problem(
        self, info: CheckpointInfo, reads: Mapping[str, Collection[tuple[int, int]] | None] | None
    ) -> str | None:
        """What is wrong with the checkpoint's contents, None when its hashes match: the whole
        file or folder, or (``reads`` given, see :data:`Scope`) the folder's piece list and just
        the pieces holding what this process reads."""
        path, algorithm = self.directory / info.file, info.algorithm
        if info.parts is None:
            digest = checkpoint_digest(path, algorithm)
        elif reads is None:
            digest = parts_digest(part_digests(path, algorithm, info.chunk), algorithm)
        else:
            return self._pieces_problem(info, reads)
        if digest == info.digest:
            return None
        return f"{path} fails its {algorithm} check (file {digest[:12]}…, manifest {info.digest[:12]}…)"

    def _pieces_problem(
        self, info: CheckpointInfo, reads: Mapping[str, Collection[tuple[int, int]] | None]
    ) -> str | None:
        path, algorithm, chunk, parts = self.directory / info.file, info.algorithm, info.chunk, info.parts
        assert parts is not None and chunk > 0
        if parts_digest(parts, algorithm) != info.digest:
            return f"the manifest's piece list of {path} does not match its {algorithm} digest"
        files = {f.relative_to(path).as_posix(): f for f in files_of(path)}
        if set(files) != set(parts):
            return f"{path} holds {sorted(files)}, the manifest lists {sorted(parts)}"
        for name, f in files.items():
            if -(-f.stat().st_size // chunk) != len(parts[name]):
                return f"{f} has {f.stat().st_size} bytes, not what the manifest's {len(parts[name])} pieces hold"
        for name in sorted(reads):
            if name not in parts:
                return f"{path / name} is read but not listed in the manifest"
            ranges = reads[name]
            pieces = set(range(len(parts[name]))) if ranges is None else pieces_holding(ranges, chunk)
            want = [parts[name][i] for i in sorted(pieces) if i < len(parts[name])]
            if chunk_digests(path / name, algorithm, chunk, pieces) != want:
                return f"{path / name} fails its {algorithm} check (a piece differs from the manifest's)"
        return None

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
