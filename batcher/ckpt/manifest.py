"""The checkpoint manifest ``ckpt/manifest.json`` and the checkpoints' names: which checkpoints
of a run are good, in the order they were made. Its owner; the store writes it last, so a
checkpoint exists only once the manifest names it.

    {"format": 1, "checkpoints": [{file, step, segment, digest, algorithm, size, created, save_s,
                                   parts, chunk}]}

``parts`` (sharded folders only; absent in manifests written before it) maps each file of the
folder to the digests of its ``chunk``-byte pieces, and ``digest`` is computed from that list
(:func:`batcher.run.atomic_files.parts_digest`), so each rank verifies just the pieces it reads.

A checkpoint is ``step-<step>.pt`` (a file) or ``step-<step>.dcp`` (a folder of FSDP shards),
named by the loop's step; a later save that added no step gets ``step-<step>.<n>.pt``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from batcher.run.atomic_files import FaultHook, atomic_file, no_fault

__all__ = [
    "FORMAT",
    "MANIFEST",
    "REST",
    "CheckpointInfo",
    "checkpoint_order",
    "is_checkpoint_name",
    "new_checkpoint_name",
    "read_manifest",
    "write_manifest",
]

MANIFEST = "manifest.json"
REST = "rest.pt"  # in a sharded checkpoint folder: everything but the sharded objects
FORMAT = 1
_NAME = re.compile(r"^step-(\d{9,})(?:\.(\d+))?\.(?:pt|dcp)$")


@dataclass(frozen=True)
class CheckpointInfo:
    """One entry of the manifest: a good checkpoint, its step, and how to verify it."""

    file: str
    step: int
    segment: int
    digest: str
    size: int
    created: float
    save_s: float = 0.0
    algorithm: str = "sha256"
    parts: Mapping[str, list[str]] | None = field(default=None, hash=False)
    chunk: int = 0


def is_checkpoint_name(name: str) -> bool:
    return _NAME.match(name) is not None


def checkpoint_order(name: str) -> tuple[int, int]:
    """(step, n) of a checkpoint's name: the order in which the saves were made ((-1, -1) for others)."""
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (-1, -1)


def new_checkpoint_name(step: int, ext: str, taken: set[str]) -> str:
    """``step-<step>.<ext>``, or ``step-<step>.<n>.<ext>`` with the first ``n`` not in ``taken``."""
    base, n = f"step-{step:09d}", 0
    while (name := f"{base}.{ext}" if n == 0 else f"{base}.{n}.{ext}") in taken:
        n += 1
    return name


def read_manifest(directory: Path) -> tuple[list[CheckpointInfo] | None, str | None]:
    """Return (entries oldest first, problem); entries is None when the manifest is missing
    (problem None) or unreadable (problem says why)."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc}"
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            return None, f"{path} has unknown format {doc.get('format')!r}"
        entries = [CheckpointInfo(**e) for e in doc["checkpoints"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"{path} is damaged ({type(exc).__name__}: {exc})"
    return sorted(entries, key=lambda e: (e.step, checkpoint_order(e.file)[1])), None


def write_manifest(
    directory: Path, entries: list[CheckpointInfo], *, keep_note: str, fault: FaultHook = no_fault
) -> None:
    """Replace the manifest atomically (temp file, fsync, rename, fsync folder) with ``entries``."""
    rows = [{k: v for k, v in asdict(e).items() if k not in ("parts", "chunk") or v} for e in entries]
    doc = {"format": FORMAT, "checkpoints": rows}
    data = (json.dumps(doc, indent=1) + "\n").encode()
    with atomic_file(directory / MANIFEST, fault, keep_note, "manifest") as f:
        f.write(data)
