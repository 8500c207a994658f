"""Saves while training goes on: periodic background saves, seg.save(), Ctrl-C (in-process, injected
clock; the kill tests are in test_reliability.py)."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch
from conftest import FakeClock
from torch import nn

import batcher
from batcher.ckpt.manifest import read_manifest
from batcher.ckpt.store import CheckpointStore
from batcher.errors import SaveError


def _make(tmp_path: Path, clock: FakeClock, **kw):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = io.StringIO()
    kw.setdefault("margin_s", 5.0)
    seg = batcher.segment(
        run_dir=tmp_path / "run", model=model, optimizer=opt, clock=clock, out=out, progress_every_s=0, **kw
    )
    return seg, model, opt, out


def _steps(tmp_path: Path) -> list[int]:
    entries, _ = read_manifest(tmp_path / "run" / "ckpt")
    assert entries is not None
    return [e.step for e in entries]


def _train(seg, model, opt, clock: FakeClock, *, epochs: int, batches: int, step_s: float, each=None) -> None:
    for _ in seg.range(epochs):
        for _ in seg.iterate(range(batches)):
            model(torch.ones(1, 3)).sum().backward()
            opt.step()
            clock.advance(step_s)
            if each is not None:
                each(seg)


def test_periodic_saves_by_time_go_through_the_store(tmp_path: Path, clock: FakeClock) -> None:
    seg, model, opt, out = _make(tmp_path, clock, save_every="10m", keep=10)
    _train(seg, model, opt, clock, epochs=3, batches=12, step_s=60.0)
    seg.done()
    assert _steps(tmp_path) == [10, 20, 30, 36]
    assert out.getvalue().count("in the background") == 3  # each reported at a later boundary or at the end
    assert json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())["checkpoint"][
        "file"
    ].endswith("step-000000036.pt")


def test_the_status_timeline_says_where_the_segment_time_went(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHER_LAUNCHED", str(clock.now - 4.0))  # the job's shell, before import torch
    seg, model, opt, _ = _make(tmp_path, clock)
    _train(seg, model, opt, clock, epochs=1, batches=3, step_s=2.0)
    seg.done()
    timeline = json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())["timeline"]
    assert list(timeline) == ["launched", "segment", "training", "stopping", "saved", "status"]
    assert timeline["segment"] - timeline["launched"] == 4.0
    assert timeline["saved"] - timeline["training"] == 6.0 and timeline["status"] == timeline["saved"]


def test_periodic_saves_by_steps_and_off(tmp_path: Path, clock: FakeClock) -> None:
    seg, model, opt, _ = _make(tmp_path, clock, save_every=4, keep=10)
    _train(seg, model, opt, clock, epochs=2, batches=5, step_s=1.0)
    seg.done()
    assert _steps(tmp_path) == [4, 8, 10]
    seg, model, opt, _ = _make(tmp_path / "b", clock, save_every="off", keep=10)
    _train(seg, model, opt, clock, epochs=2, batches=5, step_s=3600.0)
    seg.done()
    assert _steps(tmp_path / "b") == [10]


def test_the_environment_sets_the_interval(tmp_path: Path, clock: FakeClock, monkeypatch) -> None:
    monkeypatch.setenv("BATCHER_SAVE_EVERY", "3 steps")
    seg, model, opt, _ = _make(tmp_path, clock, keep=10)
    _train(seg, model, opt, clock, epochs=1, batches=7, step_s=1.0)
    seg.done()
    assert _steps(tmp_path) == [3, 6, 7]
    monkeypatch.setenv("BATCHER_SAVE_EVERY", "often")
    with pytest.raises(batcher.BatcherError, match="BATCHER_SAVE_EVERY='often' cannot be read"):
        _make(tmp_path / "c", clock)


def test_a_periodic_checkpoint_resumes_at_its_step(tmp_path: Path, clock: FakeClock) -> None:
    seg, model, opt, _ = _make(tmp_path, clock, save_every=5, keep=10)
    with pytest.raises(RuntimeError, match="crash"):

        def crash(s):
            if s.step == 7:
                raise RuntimeError("crash")

        _train(seg, model, opt, clock, epochs=2, batches=6, step_s=1.0, each=crash)
    seg._close()  # what the end of the crashed process would do: the background write is finished
    again, _, _, out = _make(tmp_path, clock, save_every=5, keep=10)
    assert (
        again.step == 5
        and "resumed from checkpoint step-000000005.pt (epoch 0, batch 5, step 5)" in out.getvalue()
    )
    again._close()


def test_a_failed_background_save_is_raised_and_keeps_the_previous_checkpoint(
    tmp_path: Path, clock: FakeClock
) -> None:
    saves = {"n": 0}

    def fault(label: str) -> None:
        if label == "checkpoint:before-fsync":
            saves["n"] += 1
            if saves["n"] == 2:
                raise OSError(errno.ENOSPC, "simulated")

    store = CheckpointStore(tmp_path / "run" / "ckpt", keep=3, fault=fault)
    seg, model, opt, _ = _make(tmp_path, clock, save_every=3, store=store)
    reached = []
    with pytest.raises(SaveError, match=r"saving step 6 in the background failed: .*disk is full") as err:
        _train(
            seg, model, opt, clock, epochs=1, batches=50, step_s=1.0, each=lambda s: reached.append(s.step)
        )
    assert "The previous checkpoint (step 3) is intact" in str(err.value)
    assert reached[-1] < 50  # raised at a boundary soon after the write ended, not at the end
    seg._close()
    assert _steps(tmp_path) == [3]
    assert not [p for p in (tmp_path / "run" / "ckpt").iterdir() if p.name.startswith(".")]


def test_a_stop_waits_for_the_write_in_flight_and_is_not_taken_for_a_short_slot(
    tmp_path: Path, clock: FakeClock
) -> None:
    release = threading.Event()

    def fault(label: str) -> None:
        if label == "checkpoint:before-fsync":
            assert release.wait(30)

    store = CheckpointStore(tmp_path / "run" / "ckpt", keep=3, fault=fault)
    seg, model, opt, _ = _make(tmp_path, clock, save_every=2, store=store)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    _train(seg, model, opt, clock, epochs=1, batches=3, step_s=1.0)  # the save of step 2 is in flight
    seg.done()  # waits for it, then saves the final state
    timer.join()
    assert _steps(tmp_path) == [2, 3]  # the periodic one, then the final state (done)
    status = json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())
    assert status["status"] == "done"


def test_seg_save_saves_at_the_end_of_the_current_step(tmp_path: Path, clock: FakeClock) -> None:
    seg, model, opt, _ = _make(tmp_path, clock, save_every="off", keep=10)
    seg.save()  # before the loop: at once
    assert _steps(tmp_path) == [0]
    for epoch in seg.range(3):
        for _ in seg.iterate(range(4)):
            model(torch.ones(1, 3)).sum().backward()
            opt.step()
        if epoch == 1:  # e.g. the best validation loss so far
            seg.save()
    seg.done()
    assert _steps(tmp_path) == [0, 8, 12]


def test_ctrl_c_saves_at_the_next_step_and_exits_130_a_second_one_aborts(
    tmp_path: Path, clock: FakeClock, python_ctrl_c: None
) -> None:
    before = signal.getsignal(signal.SIGINT)
    seg, model, opt, _ = _make(tmp_path, clock, save_every="off")

    def interrupt(s):
        if s.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(batcher.SegmentStopped) as stopped:
        _train(seg, model, opt, clock, epochs=2, batches=5, step_s=1.0, each=interrupt)
    assert stopped.value.code == 130
    status = json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())
    assert status["stop_reason"] == "signal SIGINT" and status["step"] == 4  # the step it was in
    assert signal.getsignal(signal.SIGINT) is before

    seg, model, opt, _ = _make(tmp_path, clock, save_every="off")
    assert seg.step == 4

    def twice(s):
        if s.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _train(seg, model, opt, clock, epochs=2, batches=5, step_s=1.0, each=twice)
    seg._close()
    assert signal.getsignal(signal.SIGINT) is before
    assert _steps(tmp_path) == [4]  # nothing saved by an abort; the last checkpoint is intact


_CRASH_WHILE_WRITING = """
import sys, time, torch, batcher
from batcher.ckpt.store import CheckpointStore

def slow(label):
    if label == "checkpoint:before-fsync":
        time.sleep(1.0)  # the crash below comes while this write is in flight

run = sys.argv[1]
model = torch.nn.Linear(3, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
seg = batcher.segment(run_dir=run, model=model, optimizer=opt, save_every=2,
                      store=CheckpointStore(run + "/ckpt", fault=slow))
for _ in seg.range(1):
    for _ in seg.iterate(range(10)):
        opt.step()
        if seg.step == 2:  # the save of step 2 began at the boundary before this step
            raise RuntimeError("the script crashed")
"""


def test_a_crash_while_a_background_write_is_in_flight_still_commits_it(tmp_path: Path) -> None:
    """The writer is no daemon thread: the interpreter waits for it before the process ends."""
    import subprocess
    import sys

    from conftest import python_env

    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_WHILE_WRITING, str(run)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "the script crashed" in done.stderr
    assert _steps(tmp_path) == [2]
    assert batcher.load_checkpoint(run)["step"] == 2


@pytest.mark.parametrize(("limit", "prepared"), [("14m", 0), (None, 1), ("2h", 1)])
def test_host_memory_is_set_aside_only_when_a_periodic_save_can_come(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, limit: str | None, prepared: int
) -> None:
    """With the 30-minute default a 14-minute job never saves periodically: it allocates nothing."""
    from batcher.ckpt.snapshot import HostSnapshot

    calls: list[object] = []
    monkeypatch.setattr(HostSnapshot, "prepare", lambda self, state: calls.append(state))
    seg, model, opt, _ = _make(tmp_path, clock, **({"time_limit": limit} if limit else {}))
    _train(seg, model, opt, clock, epochs=1, batches=5, step_s=1.0)
    seg.done()
    assert len(calls) == prepared
