"""The segment status file ``status/seg-NNNN.json``: what one segment did, written last.

Its owner: the in-job library writes it (:func:`write_status`), the workflow reads it to decide
whether the chain goes on (:meth:`SegmentStatus.is_final`), ``batcher status`` and the summary
read it for progress and timings. Written atomically: a reader sees no file or a whole one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from batcher.run.atomic_files import atomic_write_bytes

__all__ = [
    "STATUS_VERSION",
    "CheckpointRef",
    "SegmentSeconds",
    "SegmentStatus",
    "read_status",
    "write_status",
]

STATUS_VERSION = 1
State = Literal["unfinished", "done"]


@dataclass(frozen=True)
class SegmentSeconds:
    """Where a segment's wall time went: ``save`` is every second training was held by saves,
    ``stalls`` the part of it before the segment began to stop (periodic and ``seg.save()``
    copies), the rest is the final save."""

    wall: float = 0.0
    load: float = 0.0
    save: float = 0.0
    train: float = 0.0
    stalls: float = 0.0


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint a segment ended with, as its manifest entry has it."""

    file: str
    digest: str
    algorithm: str
    size: int


@dataclass(frozen=True)
class SegmentStatus:
    """One segment's outcome. ``step`` counts steps over the whole run (the number in checkpoint
    names, logs and metrics); ``progress`` is the part of ``seg.range(total)`` behind, 1.0 only
    when ``status`` is ``done``."""

    status: State
    segment: int = 0
    experiment: str = ""
    stop_reason: str = ""
    epoch: int = 0
    batch: int = 0
    step: int = 0
    steps_this_segment: int = 0
    total: int | None = None
    progress: float | None = None
    started: str | None = None  # ISO times, UTC
    ended: str | None = None
    deadline: str | None = None
    deadline_source: str = ""
    seconds: SegmentSeconds = field(default_factory=SegmentSeconds)
    step_s_median: float | None = None
    checkpoint: CheckpointRef | None = None
    run_dir: str = ""
    # unix seconds: "launched" (the job's shell about to start Python, BATCHER_LAUNCHED), "segment"
    # (batcher.segment() called), "training" (restored), "stopping" (the final save begins),
    # "saved" (the last save's end), "status"
    timeline: dict[str, float] = field(default_factory=dict)
    attempt: str = ""  # the Slurm job id, else pid<N> (as in the heartbeat file's name)
    world_size: int | None = None  # ranks the segment trained on (None: written before it was kept)

    def is_final(self, length: int) -> bool:
        """The one definition of a finished chain: done, for at least ``length`` (the configured
        length; a run that was finished for a shorter one goes on when the length is raised)."""
        return self.status == "done" and (self.total is None or self.total >= length)

    def as_dict(self) -> dict[str, Any]:
        return {"version": STATUS_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SegmentStatus:
        """Read a status document; unknown keys are ignored, missing ones take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        if isinstance(values.get("seconds"), Mapping):
            values["seconds"] = SegmentSeconds(**values["seconds"])
        if isinstance(values.get("checkpoint"), Mapping):
            values["checkpoint"] = CheckpointRef(**values["checkpoint"])
        return cls(**values)


def write_status(path: Path, status: SegmentStatus | Mapping[str, Any]) -> None:
    """Write ``status`` atomically: the workflow sees no file or a complete one."""
    if not isinstance(status, SegmentStatus):
        status = SegmentStatus.from_dict(status)
    data = (json.dumps(status.as_dict(), indent=1, default=str) + "\n").encode()
    atomic_write_bytes(path, data, what="status file")


def read_status(path: Path) -> SegmentStatus | None:
    """Return a segment's status, or None when the file does not exist or is not a status file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("status") not in ("unfinished", "done"):
        return None
    try:
        return SegmentStatus.from_dict(doc)
    except TypeError:
        return None
