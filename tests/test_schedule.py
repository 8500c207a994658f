"""The save schedule: periodic and requested saves, one background save in flight, with a fake saver."""

from __future__ import annotations

from typing import Any

import pytest

from batcher.ckpt.manifest import CheckpointInfo
from batcher.ckpt.periodic import SaveEvery
from batcher.ckpt.schedule import SaveSchedule
from batcher.errors import SaveError
from batcher.stopping.decision import FAILED, NO_STOP, SAVE


class FakeSaver:
    def __init__(self) -> None:
        self.started: list[int] = []
        self.prepared = 0
        self.outcome: Any = None
        self.last_stall_s = 0.0

    def poll(self) -> Any:
        outcome, self.outcome = self.outcome, None
        return outcome

    def prepare(self, state: Any) -> None:
        self.prepared += 1

    def start(self, state: Any, *, step: int, segment: int) -> None:
        self.started.append(step)

    def wait(self) -> Any:
        if isinstance(self.outcome, BaseException):
            raise SaveError("disk full")
        return self.poll()


def _info(step: int) -> CheckpointInfo:
    return CheckpointInfo(f"step-{step:09d}.pt", step, 0, "d", 1, 0.0)


def test_periodic_by_steps_requested_and_reported_once() -> None:
    saver, heard = FakeSaver(), []
    schedule = SaveSchedule(SaveEvery(steps=3), saver, on_saved=heard.append)  # type: ignore[arg-type]
    schedule.restart(0.0, 10)
    state = dict
    assert schedule.code(1.0, 10, end=None, state=state) == NO_STOP  # no step taken yet
    assert schedule.code(1.0, 12, end=None, state=state) == NO_STOP and saver.prepared == 1
    assert schedule.code(1.0, 13, end=None, state=state) == SAVE
    schedule.start({}, now=1.0, step=13, segment=0)
    assert saver.started == [13] and schedule.code(2.0, 14, end=None, state=state) == NO_STOP
    schedule.request()  # seg.save(): at the end of this step
    assert schedule.code(2.0, 14, end=None, state=state) == SAVE
    schedule.start({}, now=2.0, step=14, segment=0)
    info = _info(14)
    saver.outcome = info
    assert schedule.code(3.0, 15, end=None, state=state) == NO_STOP
    saver.outcome = info
    schedule.wait()
    assert heard == [info]  # heard once, whichever saw it first


def test_no_host_memory_when_no_periodic_save_can_come_and_a_failure_is_failed() -> None:
    saver = FakeSaver()
    schedule = SaveSchedule(SaveEvery(seconds=1800), saver, on_saved=lambda info: None)  # type: ignore[arg-type]
    schedule.restart(0.0, 0)
    assert schedule.code(1.0, 1, end=840.0, state=dict) == NO_STOP and saver.prepared == 0
    saver.outcome = OSError("disk full")
    assert schedule.code(2.0, 2, end=840.0, state=dict) == FAILED
    saver.outcome = OSError("disk full")
    with pytest.raises(SaveError):
        schedule.wait()
