"""One process per run folder: an advisory ``flock`` that the kernel drops when the holder dies."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from batcher.errors import RunLockedError, SaveError

__all__ = ["RunLock", "is_locked"]


def is_locked(path: Path) -> bool:
    """True while a process holds the run lock at ``path`` (``batcher status``: a running segment)."""
    try:
        with open(path, "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


class RunLock:
    """Hold ``<run>/lock`` while training; a second process fails within ``wait_s``, a dead
    holder's lock is free. The short wait lets a probe (``batcher status``'s :func:`is_locked`
    holds the lock for a moment) pass instead of failing a starting segment."""

    def __init__(self, path: Path, *, wait_s: float = 3.0) -> None:
        self.path = path
        self.wait_s = wait_s
        self._f: IO[str] | None = None

    def acquire(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise SaveError(
                f"cannot create lock file {self.path}: {exc.strerror or exc}; make the run folder "
                "writable or choose another with BATCHER_RUN_DIR"
            ) from exc
        if not _lock_within(f, self.wait_s):
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise RunLockedError(
                f"run folder {self.path.parent} is in use by {holder}; wait for it to finish or stop "
                "it (a lock left by a killed process is released automatically)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None


def _lock_within(f: IO[str], wait_s: float) -> bool:
    until = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= until:
                return False
            time.sleep(0.02)
