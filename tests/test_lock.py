"""One process per run folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batcher.errors import RunLockedError
from batcher.lock import RunLock, is_locked


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
        RunLock(path).acquire()
    lock.release()
    RunLock(path).acquire().release()  # free again
