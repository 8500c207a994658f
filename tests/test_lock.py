"""One process per run folder."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from batcher.errors import RunLockedError
from batcher.run.lock import RunLock, is_locked


def test_a_second_holder_fails_fast_and_status_sees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "run" / "lock"
    assert not is_locked(path)
    lock = RunLock(path).acquire()
    assert f"pid {os.getpid()}" in path.read_text()
    if os.fork() == 0:  # another process: flock is per open file, so fork to see it held
        os._exit(0 if is_locked(path) else 1)
    _, code = os.wait()
    assert os.waitstatus_to_exitcode(code) == 0
    with pytest.raises(RunLockedError, match="is in use by pid"):
        RunLock(path, wait_s=0.1).acquire()
    lock.release()
    RunLock(path).acquire().release()  # free again


def test_a_segment_starting_while_batcher_status_probes_the_lock_waits_for_it(tmp_path: Path) -> None:
    """#27: ``batcher status`` probes the lock by taking it for a moment; a segment starting
    then waited no time and failed with RunLockedError, burning a retry."""
    path = tmp_path / "run" / "lock"
    path.parent.mkdir()
    with open(path, "a+") as probe:
        fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as is_locked() does
        starting = threading.Event()
        got: list[object] = []

        def start() -> None:
            starting.set()
            try:
                got.append(RunLock(path, wait_s=30).acquire())
            except RunLockedError as exc:
                got.append(exc)

        segment = threading.Thread(target=start)
        segment.start()
        starting.wait()
        time.sleep(0.2)  # the probe's moment (a machine twice as slow only starts later)
        fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
    segment.join(60)
    assert len(got) == 1 and isinstance(got[0], RunLock), got
    got[0].release()
