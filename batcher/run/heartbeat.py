"""The heartbeat file ``heartbeat/seg-NNNN-<attempt>.json``: how far a running segment has got.

A segment that dies unplanned (SIGKILL, OOM killer, node failure) writes no status file; what it
trained after its last committed checkpoint is lost and trained again by the next attempt. The
heartbeat says how much: rank 0 rewrites it (atomically, a few hundred bytes) at least every
:data:`HEARTBEAT_S` seconds of training and at every committed save. Its owner: the in-job
library writes it (:class:`batcher.api.timeline.Timeline`); the time account
(:mod:`batcher.workflow.account`) reads it.

The step a dead attempt had reached is known to within one heartbeat interval; the seconds lost
are known exactly from ``committed_at`` (when the state of the newest committed checkpoint was
taken) to the job's end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from batcher.run.atomic_files import atomic_write_bytes

__all__ = ["HEARTBEAT_S", "HEARTBEAT_VERSION", "Heartbeat", "read_heartbeat", "write_heartbeat"]

HEARTBEAT_VERSION = 1
HEARTBEAT_S = 10.0  # the longest time between two heartbeats of a training segment


@dataclass(frozen=True)
class Heartbeat:
    """One attempt at a segment, as far as it got. Times are unix seconds.

    ``attempt``: the Slurm job id, else ``pid<N>``. ``step``: steps done over the whole run at
    ``time``, from ``first_step`` (where this attempt began). ``committed_step``/``committed_at``: the newest committed checkpoint (saved or
    resumed from) and when its state was taken; ``held_at_commit``: ``held_s`` then.
    ``held_s``: seconds training was held by saves so far. ``timeline``: the marks so far
    (``launched``, ``segment``, ``training``; see :class:`batcher.run.status.SegmentStatus`).
    """

    segment: int
    attempt: str
    time: float
    step: int
    first_step: int
    committed_step: int
    committed_at: float
    held_s: float = 0.0
    held_at_commit: float = 0.0
    timeline: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"version": HEARTBEAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Heartbeat:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    """Write ``beat`` atomically: a reader sees the previous heartbeat or this one."""
    atomic_write_bytes(path, (json.dumps(beat.as_dict()) + "\n").encode(), what="heartbeat")


def read_heartbeat(path: Path) -> Heartbeat | None:
    """Return the heartbeat in ``path``, or None when there is none or it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Heartbeat.from_dict(doc) if isinstance(doc, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return None
