"""Reading a run's checkpoints: the newest one that passes its checks, verified before it is trusted.

Size and digest (the manifest's, see :mod:`batcher.manifest`) are checked before a loaded state
is used, and ``torch.load(weights_only=True)`` cannot run code. A damaged newer checkpoint is
reported and the previous good one used; nothing is deleted when none is good.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from batcher.errors import BatcherError, NoUsableCheckpointError
from batcher.files import checkpoint_digest, checkpoint_size
from batcher.manifest import (
    MANIFEST,
    CheckpointInfo,
    checkpoint_order,
    is_checkpoint_name,
    read_manifest,
)

__all__ = ["REST", "Apply", "CheckpointReader", "LoadedCheckpoint"]

REST = "rest.pt"  # in a sharded checkpoint folder: everything but the sharded objects

#: puts a loaded state into the live objects (see :meth:`CheckpointStore.load_latest`)
Apply = Callable[[dict[str, Any], "CheckpointInfo"], None]


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
                st = (self.directory / name).stat()
                size = checkpoint_size(self.directory / name)
                entries.append(CheckpointInfo(name, checkpoint_order(name)[0], -1, "", size, st.st_mtime))
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
