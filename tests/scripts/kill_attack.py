"""The kill attacks of tests/test_reliability.py, run in a fresh process.

``deadline``: segments with short deadlines, killed at random instants and file operations.
``periodic``: a run with no deadline and periodic background saves, killed at random instants
and during its background writes; each kill's lost training is measured.

Children are forked from this process after it imported torch (so each segment starts in
milliseconds), never from pytest's: a process that already ran torch ops has OpenMP threads, and
a child forked from it can hang. Usage: kill_attack.py RUN_DIR REFERENCE_DIR SEED REPORT.json [deadline|periodic]
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_full

from batcher.errors import BatcherError, SlotTooShortError

EPOCHS = 3
SAVE_EVERY = 4  # steps, in the periodic attack
PERIODIC_STEP_S = 0.05
# roughly how often each operation happens in one segment, to spread the kills over all of them
CALLS_PER_SEGMENT = {"rename": 4, "fsync": 5, "unlink": 2, "save": 1, "log": 25}
KINDS = {*CALLS_PER_SEGMENT, "time"}

# Pay torch's lazy imports (torch._dynamo on the first optimizer, about 1.5 s) once, before forking.
torch.optim.Adam(torch.nn.Linear(1, 1).parameters())


def _fork(child: Callable[[], None]) -> int:
    """Run ``child`` in a forked process; return its wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            child()
        except SystemExit as exc:
            code = int(exc.code or 0)
        except BatcherError as exc:
            traceback.print_exc()
            code = exc.exit_code
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def _segment(
    run_dir: Path, *, budget_s: float | None, kill_op: str | None, kill_at: int, step_sleep: float = 0.02
) -> Callable[[], None]:
    def child() -> None:
        os.environ["BATCHER_RUN_DIR"] = str(run_dir)
        if budget_s is not None:
            os.environ["BATCHER_DEADLINE"] = f"@{time.time() + budget_s}"
        else:
            os.environ["BATCHER_SAVE_EVERY"] = f"{SAVE_EVERY} steps"
        os.environ["BATCHER_MARGIN_S"] = "0.05"
        os.environ["BATCHER_PROGRESS_S"] = "0"
        sys.stderr = open(run_dir.parent / "children.log", "a")
        if kill_op is not None:
            _arm(kill_op, kill_at)
        train_full.train(epochs=EPOCHS, step_sleep=step_sleep)

    return child


def _arm(op: str, at: int) -> None:
    """SIGKILL this process at the ``at``-th call of a file operation (rename, fsync, unlink, write)."""
    import batcher.ckpt.store
    import batcher.run.metrics

    calls = {"n": 0}

    def wrap(real: Callable[..., object]) -> Callable[..., object]:
        def wrapped(*args: object, **kwargs: object) -> object:
            calls["n"] += 1
            if calls["n"] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        return wrapped

    if op == "rename":
        batcher.ckpt.store.os.replace = wrap(os.replace)  # type: ignore[assignment]
    elif op == "fsync":
        batcher.ckpt.store.os.fsync = wrap(os.fsync)  # type: ignore[assignment]
    elif op == "unlink":
        Path.unlink = wrap(Path.unlink)  # type: ignore[method-assign]
    elif op == "save":
        batcher.ckpt.store.torch.save = wrap(torch.save)  # type: ignore[assignment]
    elif op == "log":
        batcher.run.metrics.MetricLog.log = wrap(batcher.run.metrics.MetricLog.log)  # type: ignore[method-assign]


def reference(run: Path) -> None:
    """The uninterrupted run."""
    pid = _fork(_segment(run, budget_s=3600, kill_op=None, kill_at=0))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (run.parent / "children.log").read_text()[-3000:]


def attack(run: Path, seed: int) -> dict[str, object]:
    """Run segments until done while killing them; return what happened."""
    rng = random.Random(seed)
    kills = stops = too_short = 0
    kinds: dict[str, int] = {}
    # A segment's budget covers its restore, its steps and its save. Sized for this machine: when
    # a segment could not take one step (SlotTooShortError, the library refusing to start a step
    # it cannot save in time), the budgets grow by half, so a slower machine gets larger ones.
    scale = 1.0
    for _ in range(400):
        plan = rng.random()
        # before the first save the library assumes a slow disk (1 s); give it room to measure one
        budget = scale * (0.5 if (run / "ckpt" / "manifest.json").exists() else 1.3)
        if plan < 0.45:  # at a file operation: rename, fsync, unlink, torch.save, metric write
            op = rng.choice(list(CALLS_PER_SEGMENT))
            at = rng.randint(1, CALLS_PER_SEGMENT[op])
            pid = _fork(_segment(run, budget_s=budget, kill_op=op, kill_at=at))
        else:  # at a random instant, mid-step or mid-save
            op = "time"
            pid = _fork(_segment(run, budget_s=budget, kill_op=None, kill_at=0))
            if plan < 0.9:
                time.sleep(rng.uniform(0.0, budget))
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            kills += 1
            kinds[op] = kinds.get(op, 0) + 1
            continue
        code = os.waitstatus_to_exitcode(status)
        if code == SlotTooShortError.exit_code and too_short < 10:
            too_short += 1
            scale *= 1.5
            continue
        if code != 0:
            log = (run.parent / "children.log").read_text()[-3000:]
            return {"error": f"segment failed with exit {code} after {kills} kills:\n{log}"}
        stops += 1
        last = max((run / "status").glob("seg-*.json"), key=lambda p: p.stat().st_mtime)
        if json.loads(last.read_text())["status"] == "done":
            if kills >= 50 and set(kinds) == KINDS:
                break
            # keep attacking from the start until 50 kills of every kind landed
            run.rename(run.with_name(run.name + f".done-{time.time_ns()}"))
    return {"kills": kills, "stops": stops, "kinds": kinds, "budget_scale": scale}


def _lost_steps(run: Path) -> tuple[int, int]:
    """After a kill: (steps trained, step of the newest committed checkpoint). Every step logs a
    row (flushed) before it ends, so the rows tell how far training got."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.endswith("}")]
    trained = rows[-1]["step"] + 1 if rows else 0
    manifest = run / "ckpt" / "manifest.json"
    entries = json.loads(manifest.read_text())["checkpoints"] if manifest.exists() else []
    return trained, max((e["step"] for e in entries), default=0)


def periodic_attack(run: Path, seed: int) -> dict[str, object]:
    """A run with no deadline saving every SAVE_EVERY steps in the background, killed again and
    again (at random instants, and at a file operation of a save: mostly on the writer thread)
    until it finishes; at least 20 kills. Each kill's loss is measured from the metric rows and the manifest."""
    rng = random.Random(seed)
    kills, stops = 0, 0
    kinds: dict[str, int] = {}
    lost: list[dict[str, object]] = []
    for _ in range(400):
        if rng.random() < 0.4:  # during a save: its torch.save, an fsync or a rename
            op = rng.choice(["save", "fsync", "rename"])
            pid = _fork(
                _segment(
                    run, budget_s=None, kill_op=op, kill_at=rng.randint(1, 8), step_sleep=PERIODIC_STEP_S
                )
            )
        else:
            op = "time"
            pid = _fork(_segment(run, budget_s=None, kill_op=None, kill_at=0, step_sleep=PERIODIC_STEP_S))
            time.sleep(rng.uniform(0.2, 1.5))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            kills += 1
            kinds[op] = kinds.get(op, 0) + 1
            if (run / "metrics.jsonl").exists():
                trained, saved = _lost_steps(run)
                lost.append({"kind": op, "trained": trained, "saved": saved, "lost": trained - saved})
            continue
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log = (run.parent / "children.log").read_text()[-3000:]
            return {"error": f"segment failed with exit {code} after {kills} kills:\n{log}"}
        stops += 1
        if kills >= 20 and {"time", "save", "fsync", "rename"} <= set(kinds):
            break
        run.rename(run.with_name(run.name + f".done-{time.time_ns()}"))  # again, from the start
    manifest = json.loads((run / "ckpt" / "manifest.json").read_text())["checkpoints"]
    return {
        "kills": kills,
        "stops": stops,
        "kinds": kinds,
        "lost": lost,
        "save_every": SAVE_EVERY,
        "step_s": PERIODIC_STEP_S,
        "write_s": max(e["save_s"] for e in manifest),
    }


if __name__ == "__main__":
    run_dir, ref_dir, seed, report = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    mode = sys.argv[5] if len(sys.argv) > 5 else "deadline"
    reference(ref_dir)
    report.write_text(
        json.dumps(attack(run_dir, seed) if mode == "deadline" else periodic_attack(run_dir, seed))
    )
