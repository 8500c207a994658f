"""The segment status file: the small JSON the workflow reads to decide whether to chain on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from batcher.files import atomic_write_bytes

__all__ = ["STATUS_VERSION", "read_status", "write_status"]

STATUS_VERSION = 1
State = Literal["unfinished", "done"]


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Write ``status`` atomically: the workflow sees no file or a complete one."""
    doc = {"version": STATUS_VERSION, **status}
    atomic_write_bytes(path, (json.dumps(doc, indent=1, default=str) + "\n").encode(), what="status file")


def read_status(path: Path) -> dict[str, Any] | None:
    """Return a status document, or None when the file does not exist or is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("status") not in ("unfinished", "done"):
        return None
    return doc
