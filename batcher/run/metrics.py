"""The metric log: ``metrics.jsonl``, one row per ``seg.log(...)``, exactly once across resumes.

Each row carries ``_seq``, a counter stored in the checkpoint. On resume, rows at or past the
restored counter (logged after the last save, or half-written by a kill) are dropped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from batcher.errors import BatcherError, SaveError
from batcher.run.atomic_files import atomic_write_bytes

__all__ = ["MetricLog", "read_metrics"]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()  # 0-d tensors and numpy scalars
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Return the complete rows of a metric log (a torn last line is ignored)."""
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class MetricLog:
    """Append-only JSON-lines log, truncated to a checkpoint's counter on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0
        self._f: IO[str] | None = None

    def resume(self, seq: int) -> None:
        """Keep only rows with ``_seq < seq`` and continue counting from ``seq``."""
        rows = read_metrics(self.path)
        keep = [r for r in rows if isinstance(r.get("_seq"), int) and r["_seq"] < seq]
        if len(keep) != len(rows) or (self.path.exists() and not self.path.read_bytes().endswith(b"\n")):
            data = "".join(json.dumps(r) + "\n" for r in keep).encode()
            atomic_write_bytes(self.path, data, what="metric log")
        self.seq = seq

    def log(self, row: dict[str, Any], *, write: bool = True) -> dict[str, Any]:
        """Append ``row`` (numbers, strings, 0-d tensors) with its sequence number and return it
        as written; ``write=False`` only counts it (the other ranks of a distributed run)."""
        if not write:
            self.seq += 1
            return row
        full = {"_seq": self.seq, **{k: _plain(v) for k, v in row.items()}}
        try:
            line = json.dumps(full)
        except TypeError as exc:
            raise BatcherError(
                f"seg.log(...): {exc}; log numbers, strings or 0-d tensors (use loss.item())"
            ) from None
        try:
            if self._f is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "a", encoding="utf-8")
            self._f.write(line + "\n")
            self._f.flush()
        except OSError as exc:
            raise SaveError(f"cannot append to metric log {self.path}: {exc.strerror or exc}") from exc
        self.seq += 1
        return full

    def sync(self) -> None:
        """Make every logged row durable (called before a checkpoint that counts them)."""
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
