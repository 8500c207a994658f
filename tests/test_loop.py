"""The segment loop in-process, with an injected clock: stop decisions, signals, errors."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from conftest import FakeClock
from torch import nn

import batcher
from batcher.errors import (
    BatcherError,
    CheckpointMismatchError,
    NotFinishedError,
    RunLockedError,
    SlotTooShortError,
)


def _make(tmp_path: Path, clock: FakeClock, **kw):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw.setdefault("margin_s", 5.0)
    seg = batcher.segment(
        run_dir=tmp_path / "run",
        model=model,
        optimizer=opt,
        clock=clock,
        out=io.StringIO(),
        progress_every_s=0,
        **kw,
    )
    return seg, model, opt


def _train(seg, opt, clock: FakeClock, *, epochs: int, batches: int, step_s: float) -> int:
    steps = 0
    for _ in seg.range(epochs):
        for _ in seg.iterate(range(batches)):
            clock.advance(step_s)
            opt.step()
            steps += 1
    return steps


def _status(tmp_path: Path, n: int) -> dict:
    return json.loads((tmp_path / "run" / "status" / f"seg-{n:04d}.json").read_text())


def test_predictive_stop_leaves_the_margin(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, opt = _make(tmp_path, clock, time_limit="100s")
    with pytest.raises(batcher.SegmentStopped) as stopped:
        _train(seg, opt, clock, epochs=10, batches=10, step_s=2.0)
    assert stopped.value.code == 0
    status = _status(tmp_path, 0)
    assert status["status"] == "unfinished" and status["stop_reason"] == "deadline"
    # 100 s budget, 5 s margin, ~1 s save guess, 2 s steps: the last step ends after 92..94 s.
    assert 46 <= status["step"] <= 47
    used = clock.now - 1_800_000_000.0
    assert 100 - 5 - 2 - 1.5 <= used <= 100 - 5


def test_no_deadline_runs_to_the_end(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, opt = _make(tmp_path, clock)
    assert _train(seg, opt, clock, epochs=3, batches=4, step_s=100.0) == 12
    seg.done()
    status = _status(tmp_path, 0)
    assert status["status"] == "done" and status["step"] == 12 and status["progress"] == 1.0


def test_step_longer_than_slot_is_an_error_not_a_loop(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, opt = _make(tmp_path, clock, time_limit="60s")
    with pytest.raises(batcher.SegmentStopped):
        _train(seg, opt, clock, epochs=1, batches=100, step_s=20.0)
    # The next segment knows a step takes 20 s; with only 20 s left it cannot make progress.
    seg, _, opt = _make(tmp_path, clock, time_limit="24s")
    with pytest.raises(SlotTooShortError, match=r"no progress possible — the next step takes ~20.0s"):
        _train(seg, opt, clock, epochs=1, batches=100, step_s=20.0)


def test_one_slow_step_does_not_wedge_the_chain(tmp_path: Path, clock: FakeClock) -> None:
    """#27: 6 s steps, one of them 60 s (a loaded machine), then 30 s slots: the typical step and
    a save fit, the slow one does not. Before, every later segment refused to start."""
    seg, _, opt = _make(tmp_path, clock, margin_s=2.0)
    durations = iter([6.0, 6.0, 6.0, 60.0])  # the first is the segment's warm-up, kept apart
    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(1):
            for _ in seg.iterate(range(1000)):
                clock.advance(next(durations))
                opt.step()
                if seg.step == 3:  # after the fourth step
                    os.kill(os.getpid(), signal.SIGUSR1)
    steps = [_status(tmp_path, 0)["step"]]
    for n in range(1, 4):
        seg, _, opt = _make(tmp_path, clock, margin_s=2.0, time_limit="30s")
        with pytest.raises(batcher.SegmentStopped):
            _train(seg, opt, clock, epochs=1, batches=1000, step_s=6.0)
        status = _status(tmp_path, n)
        assert status["stop_reason"] == "deadline"
        assert status["deadline"] >= status["ended"]  # stopped in time
        steps.append(status["step"])
    assert steps[0] == 4 and all(b - a >= 3 for a, b in itertools.pairwise(steps)), steps


def test_nothing_from_a_rejected_checkpoint_reaches_the_run(tmp_path: Path, clock: FakeClock) -> None:
    """#27: a checkpoint is applied while its hash is checked; when it then fails, the previous
    one is applied instead, and a value only the rejected one had must not survive."""
    seg, _, opt = _make(tmp_path, clock, values={"a": 0}, save_every="1 steps")
    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(1):
            for _ in seg.iterate(range(10)):
                opt.step()
                seg.values["a"] = seg.step + 1
                if seg.step + 1 == 3:  # the step-3 checkpoint alone has "b"
                    seg.values["b"] = "from-step-3"
                    os.kill(os.getpid(), signal.SIGUSR1)
    ckpt = tmp_path / "run" / "ckpt"
    newest = ckpt / "step-000000003.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 1  # the file still loads; only its hash tells
    newest.write_bytes(bytes(data))
    out = io.StringIO()
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seg = batcher.segment(
        run_dir=tmp_path / "run", values={"a": 0}, clock=clock, out=out, model=model, optimizer=opt
    )
    assert "skipping checkpoint step 3" in out.getvalue()
    assert seg.step == 2 and seg.values == {"a": 2}
    seg._close()


def test_deadline_already_past_at_start(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(SlotTooShortError, match=r"the deadline \(deadline argument\) passed 10.0s ago"):
        seg, _, opt = _make(tmp_path, clock, deadline=f"@{clock.now - 10}")
        _train(seg, opt, clock, epochs=1, batches=1, step_s=1)
    # years ago (a wrong year or zone): said in words, not as "-218455521 s remain" (#27)
    with pytest.raises(SlotTooShortError, match=r"passed \d+d \d\dh \d\dm ago, before the first step"):
        seg, _, opt = _make(tmp_path, clock, deadline="2020-01-01T00:00+00:00")
        _train(seg, opt, clock, epochs=1, batches=1, step_s=1)


def test_signal_sets_a_flag_and_saves_at_the_next_step(tmp_path: Path, clock: FakeClock) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    seg, _model, opt = _make(tmp_path, clock)
    steps = 0
    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(5):
            for _ in seg.iterate(range(10)):
                opt.step()
                steps += 1
                if steps == 7:
                    os.kill(os.getpid(), signal.SIGUSR1)
    assert steps == 7
    status = _status(tmp_path, 0)
    assert status["stop_reason"] == "signal SIGUSR1" and status["step"] == 7
    assert signal.getsignal(signal.SIGUSR1) == before  # previous handler restored
    resumed, _, _ = _make(tmp_path, clock)
    assert resumed.step == 7 and resumed.resumed


def test_values_come_back(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, _opt = _make(tmp_path, clock, values={"best": None, "history": []})
    for epoch in seg.range(2):
        seg.values["best"] = 0.5 + epoch
        seg.values["history"].append(epoch)
    seg.done()
    again, _, _ = _make(tmp_path, clock, values={"best": None, "history": []})
    assert again.values == {"best": 1.5, "history": [0, 1]}
    assert list(again.range(2)) == []
    again.done()  # done again on a finished run is fine
    # Raising the length continues from where it ended.
    more, _, _ = _make(tmp_path, clock, values={"best": None, "history": []})
    assert list(more.range(4)) == [2, 3]


def test_done_before_the_loop_ends_is_an_error(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, _ = _make(tmp_path, clock)
    for epoch in seg.range(5):
        if epoch == 2:
            break
    with pytest.raises(NotFinishedError, match="at epoch 2/5"):
        seg.done()


def test_second_process_on_the_same_run_fails_fast(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, _ = _make(tmp_path, clock)
    with pytest.raises(RunLockedError, match=f"in use by pid {os.getpid()}"):
        _make(tmp_path, clock)
    seg._close()
    _make(tmp_path, clock)  # free again


def test_changed_model_names_the_keys(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, _ = _make(tmp_path, clock)
    list(seg.range(1))
    seg.done()
    with pytest.raises(CheckpointMismatchError) as info:
        batcher.segment(
            run_dir=tmp_path / "run",
            model=nn.Linear(4, 2),
            optimizer=torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1),
            clock=clock,
            out=io.StringIO(),
        )
    assert "weight: checkpoint (2, 3) vs model (2, 4)" in str(info.value)


def test_value_a_checkpoint_cannot_hold_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, _ = _make(tmp_path, clock, values={"x": 1})
    seg.values["x"] = {"inner": [1, object()]}
    list(seg.range(1))
    with pytest.raises(BatcherError, match=r"seg\.values\['x'\]\['inner'\]\[1\] is a object"):
        seg.done()


def test_tensors_carried_between_steps_resume_exactly(tmp_path: Path, clock: FakeClock) -> None:
    """State carried from step to step outside any stateful object (an RNN's hidden state, an EMA)
    lives in seg.values: a run cut by deadlines ends with the same tensors as an uninterrupted one."""

    def run(run_dir: Path, limit: str | None) -> dict:
        for _ in range(50):
            torch.manual_seed(0)
            seg = batcher.segment(
                run_dir=run_dir,
                values={"hidden": torch.zeros(4), "ema": {"w": torch.zeros(2, 2)}, "n": 0},
                time_limit=limit,
                margin_s=1.0,
                clock=clock,
                out=io.StringIO(),
            )
            try:
                for _ in seg.range(3):
                    for x in seg.iterate([torch.full((4,), float(i)) for i in range(10)]):
                        clock.advance(1.0)
                        seg.values["hidden"] = torch.tanh(0.5 * seg.values["hidden"] + x)
                        seg.values["ema"]["w"].mul_(0.9).add_(seg.values["hidden"][:2].outer(x[:2]))
                        seg.values["n"] += 1
                seg.done()
                return batcher.load_checkpoint(run_dir)["values"]
            except batcher.SegmentStopped:
                clock.advance(10.0)
        raise AssertionError("not done after 50 segments")

    whole = run(tmp_path / "whole", None)
    cut = run(tmp_path / "cut", "8s")
    assert cut["n"] == whole["n"] == 30
    assert torch.equal(cut["hidden"], whole["hidden"]) and torch.equal(cut["ema"]["w"], whole["ema"]["w"])
    assert len(list((tmp_path / "cut" / "status").glob("seg-*.json"))) >= 4


def test_unstateful_object_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(BatcherError, match=r"batcher.segment\(thing=...\): a str has no state_dict"):
        batcher.segment(run_dir=tmp_path / "r", thing="hello", clock=clock, out=io.StringIO())


def test_bad_env_limit_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(batcher.TimeSpecError, match="BATCHER_TIME_LIMIT: cannot read 'abc'"):
        batcher.segment(
            run_dir=tmp_path / "r", env={"BATCHER_TIME_LIMIT": "abc"}, clock=clock, out=io.StringIO()
        )


def test_metrics_never_duplicated_after_resume(tmp_path: Path, clock: FakeClock) -> None:
    seg, _, _ = _make(tmp_path, clock, time_limit="50s")
    with pytest.raises(batcher.SegmentStopped):
        for _epoch in seg.range(10):
            for _ in seg.iterate(range(3)):
                clock.advance(3)
                seg.log(loss=1.0)
    # A row logged after the last save (then a kill) must disappear on resume.
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"_seq": 999, "loss": 5}\n{"_seq": 1000, "lo')
    seg, _, _opt = _make(tmp_path, clock)
    for _epoch in seg.range(10):
        for _ in seg.iterate(range(3)):
            seg.log(loss=1.0)
    seg.done()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["_seq"] for r in rows] == list(range(30))
    assert [r["step"] for r in rows] == list(range(30))


def _train_with_signals(
    seg: batcher.Segment, clock: FakeClock, *, first_step: int, signal_at: set[int]
) -> None:
    """5 s steps; send SIGURG to ourselves after the given steps; expect the segment to stop."""
    steps = first_step
    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(100):
            for _ in seg.iterate(range(10)):
                clock.advance(5)
                steps += 1
                if steps in signal_at:
                    os.kill(os.getpid(), signal.SIGURG)


def test_slurm_warning_signal_in_its_window_does_not_stop(tmp_path: Path, clock: FakeClock) -> None:
    """URG in Slurm's warning window only confirms the deadline; an early URG is a stop request."""
    end = clock.now + 300

    def squeue_after_start() -> Callable[[list[str], float], str]:
        """squeue as the segment sees it: no answer at its start, the end time when it asks again."""
        calls = []

        def squeue(argv: list[str], timeout_s: float) -> str:
            calls.append(argv)
            if len(calls) == 1:
                raise RuntimeError("squeue: error: Invalid job id specified")
            return datetime.fromtimestamp(end, tz=timezone.utc).isoformat()

        return squeue

    env = {"SLURM_JOB_ID": "999999999", "BATCHER_SLURM_SIGNAL": "URG@60"}
    seg, _, _ = _make(tmp_path, clock, env=env, slurm_query=squeue_after_start())
    assert seg.deadline.at is None  # no such job: squeue fails, the segment warns and goes on
    _train_with_signals(seg, clock, first_step=0, signal_at={10, 45})  # 250 s before the end: a person
    status = _status(tmp_path, 0)
    assert status["stop_reason"] == "signal SIGURG" and status["step"] == 10
    seg, _, _ = _make(tmp_path, clock, env=env, slurm_query=squeue_after_start())
    _train_with_signals(seg, clock, first_step=10, signal_at={45})  # 75 s before the end: Slurm
    status = _status(tmp_path, 1)
    assert status["stop_reason"] == "deadline", status
    assert status["deadline_source"] == "Slurm end time (re-read)"
    assert end - 5 - 5 - 2 <= clock.now <= end - 5


def test_each_segments_compile_step_stays_out_of_the_carried_step_times(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Every segment's first step is slow (torch.compile: 20 s, then 5 s steps, 60 s slots). Kept in
    the history, one such step per segment filled the estimate's high quantile after a few
    segments, and every later slot stopped ~15 s early; kept apart, the last segments still use
    their slot."""
    per_segment = []
    for _ in range(12):
        seg, _, opt = _make(tmp_path, clock, time_limit="60s")
        steps, first = 0, True
        try:
            for _ in seg.range(1000):
                for _ in seg.iterate(range(10)):
                    clock.advance(20.0 if first else 5.0)
                    first = False
                    opt.step()
                    steps += 1
        except batcher.SegmentStopped:
            per_segment.append(steps)
        clock.advance(30.0)
    # 60 s - 5 s margin - ~1 s save: the 20 s step and 6 steps of 5 s fit
    assert per_segment[0] == 7 and per_segment[-3:] == [7, 7, 7], per_segment


def test_a_slow_first_step_does_not_cut_the_slot_short(tmp_path: Path, clock: FakeClock) -> None:
    """torch.compile's first step (30 s here) is kept out of the step-time estimate once a normal
    step was measured: the segment trains on to the deadline instead of stopping ~30 s early."""
    seg, _, opt = _make(tmp_path, clock, time_limit="100s")
    first = [True]

    def step_time() -> float:
        slow, first[0] = first[0], False
        return 30.0 if slow else 1.0

    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(10):
            for _ in seg.iterate(range(100)):
                clock.advance(step_time())
                opt.step()
    used = clock.now - 1_800_000_000.0
    assert used >= 100 - 5 - 1 - 2.5, used  # the margin, one step, the save guess
    status = _status(tmp_path, 0)
    assert status["step"] >= 60
    saved = batcher.load_checkpoint(tmp_path / "run")
    assert saved["step"] == status["step"]


@pytest.mark.parametrize("compiled_first", [True, False])
def test_compiled_and_plain_modules_resume_each_other(
    tmp_path: Path, clock: FakeClock, compiled_first: bool
) -> None:
    """A run saved from a torch.compile'd model resumes into the plain one, and the other way
    round: the state is the same, only the `_orig_mod.` prefix of the keys differs."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    # torch.compile wraps lazily: the wrapper's state_dict has the prefixed keys without compiling
    wrapped = torch.compile(net)
    first, second = (wrapped, nn.Linear(3, 2)) if compiled_first else (net, torch.compile(nn.Linear(3, 2)))
    seg = batcher.segment(run_dir=tmp_path / "run", model=first, clock=clock, out=io.StringIO())
    for _ in seg.range(1):
        pass
    seg.done()
    seg = batcher.segment(run_dir=tmp_path / "run", model=second, clock=clock, out=io.StringIO())
    plain = second if compiled_first else second._orig_mod  # type: ignore[union-attr]
    assert torch.equal(plain.weight, net.weight) and torch.equal(plain.bias, net.bias)
    seg._close()
    fresh = nn.Linear(3, 2)  # load_checkpoint gives the plain module's keys either way (#27)
    fresh.load_state_dict(batcher.load_checkpoint(tmp_path / "run")["objects"]["model"])
    assert torch.equal(fresh.weight, net.weight)


def test_a_stop_asked_at_an_epochs_last_batch_comes_after_the_epochs_tail(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A signal at the last batch of an epoch: the code after the inner loop (the epoch's tail)
    runs once, the stop comes at seg.range's boundary; at the last epoch the run finishes."""
    seg, _, opt = _make(tmp_path, clock)
    tails = []
    with pytest.raises(batcher.SegmentStopped):
        for epoch in seg.range(2):
            for i in seg.iterate(range(5)):
                opt.step()
                if i == 4:
                    os.kill(os.getpid(), signal.SIGUSR1)
            tails.append(epoch)
    status = _status(tmp_path, 0)
    assert tails == [0] and status["status"] == "unfinished"
    assert (status["epoch"], status["batch"], status["step"]) == (1, 0, 5)
    seg, _, opt = _make(tmp_path, clock)
    for epoch in seg.range(2):
        for i in seg.iterate(range(5)):
            opt.step()
            if i == 4:
                os.kill(os.getpid(), signal.SIGUSR1)  # the run's last batch: it finishes
        tails.append(epoch)
    seg.done()
    assert tails == [0, 1] and _status(tmp_path, 1)["status"] == "done"
    assert _status(tmp_path, 1)["progress"] == 1.0


def test_one_step_numbering_in_file_names_status_log_and_metrics(tmp_path: Path, clock: FakeClock) -> None:
    """A checkpoint is named by the step the status, the log and the metrics call it."""
    out = io.StringIO()
    seg = batcher.segment(run_dir=tmp_path / "run", values={}, clock=clock, out=out, progress_every_s=0)
    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(2):
            for i in seg.iterate(range(5)):
                seg.log(i=i)
                if i == 3:
                    os.kill(os.getpid(), signal.SIGUSR1)
    first = _status(tmp_path, 0)
    assert first["step"] == 4 and first["checkpoint"]["file"].endswith("/step-000000004.pt")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # the step each row was logged in
    seg = batcher.segment(run_dir=tmp_path / "run", values={}, clock=clock, out=out, progress_every_s=0)
    assert "resumed from checkpoint step-000000004.pt (epoch 0, batch 4, step 4)" in out.getvalue()
    with pytest.raises(batcher.SegmentStopped):
        for _ in seg.range(2):
            for i in seg.iterate(range(5)):
                seg.log(i=i)
                if seg.epoch == 1:
                    os.kill(os.getpid(), signal.SIGUSR1)
    second = _status(tmp_path, 1)
    assert second["step"] == 6 and second["epoch"] == 1
    assert second["checkpoint"]["file"].endswith("/step-000000006.pt")
    assert batcher.load_checkpoint(tmp_path / "run")["file"].endswith("step-000000006.pt")
    seg = batcher.segment(run_dir=tmp_path / "run", values={}, clock=clock, out=out, progress_every_s=0)
    for _ in seg.range(2):
        for i in seg.iterate(range(5)):
            seg.log(i=i)
    seg.done()
    assert _status(tmp_path, 2)["checkpoint"]["file"].endswith("/step-000000010.pt")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10))


_STOP_THEN_EXIT = """
import atexit, gc, sys, torch, batcher
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after batcher's
model = torch.nn.Linear(3, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
seg = batcher.segment(run_dir=sys.argv[1], model=model, optimizer=opt, signals="USR1")
import os, signal
for _ in seg.range(3):
    for _ in seg.iterate(range(4)):
        opt.step()
        os.kill(os.getpid(), signal.SIGUSR1)
"""


def test_a_stopped_segment_skips_the_interpreters_last_garbage_collections(tmp_path: Path) -> None:
    """After a stop everything is durable; the objects torch made are frozen at exit, so that the
    interpreter's final collections do not walk them (1.0-1.7 s of every segment's end here)."""
    import subprocess
    import sys

    from conftest import python_env

    done = subprocess.run(
        [sys.executable, "-c", _STOP_THEN_EXIT, str(tmp_path / "run")],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "frozen at exit: True" in done.stdout
