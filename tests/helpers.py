"""Running train scripts as real processes, one segment at a time."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import yaml
from conftest import ROOT, python_env

import batcher

TRAIN_FULL = ROOT / "tests" / "scripts" / "train_full.py"
TRAIN_DDP = ROOT / "tests" / "scripts" / "train_ddp.py"
EXAMPLE = ROOT / "examples" / "train.py"

# A segment's budget counts from the script's call to batcher.segment(), after `import torch` and
# any process-group set-up, so it is training time on any machine: a test that needs N segments
# gives its run more than (N - 1) x budget_s of step sleeps (each segment trains less than budget_s).
_LAUNCH = (
    "import os, runpy, sys, time, batcher; "
    "budget = os.environ.pop('TEST_BUDGET_S', ''); "
    "real = batcher.segment; "
    "start = lambda *a, **k: (budget and os.environ.__setitem__("
    "'BATCHER_DEADLINE', '@%f' % (time.time() + float(budget))), real(*a, **k))[1]; "
    "batcher.segment = start; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


# The tests' segments vary harness flags between segments of one run (where to stop or be killed,
# a wrapper script, the world size): not hyper-parameters, so the changed-arguments check of runs
# started by hand (tests/test_command.py) is told so.
_HARNESS_ARGS = {"BATCHER_ALLOW_CHANGED_ARGS": "1"}


def sleep_per_step(*, segments: int, budget_s: float, steps: int) -> float:
    """The step sleep that makes a run of ``steps`` steps need at least ``segments`` segments of
    ``budget_s`` each, whatever the machine's speed (10 % to spare)."""
    return round(1.1 * (segments - 1) * budget_s / steps, 3)


def run_segment(
    script: Path, args: list[str], run_dir: Path, *, budget_s: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run one segment of ``script`` on ``run_dir``; ``budget_s`` is its training time."""
    extra = {"BATCHER_RUN_DIR": str(run_dir), "BATCHER_MARGIN_S": "0.2", **_HARNESS_ARGS, **env}
    if budget_s is not None:
        extra["TEST_BUDGET_S"] = str(budget_s)
    return subprocess.run(
        [sys.executable, "-c", _LAUNCH, str(script), *args],
        env=python_env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def run_chain(
    script: Path, args: list[str], run_dir: Path, *, budget_s: float, max_segments: int = 40, **env: str
) -> list[dict[str, Any]]:
    """Run segments until one reports done; return every segment's status."""
    statuses = []
    for i in range(max_segments):
        done = run_segment(script, args, run_dir, budget_s=budget_s, **env)
        assert done.returncode == 0, done.stderr
        status = json.loads((run_dir / "status" / f"seg-{i:04d}.json").read_text())
        statuses.append(status)
        if status["status"] == "done":
            return statuses
    raise AssertionError(f"not done after {max_segments} segments")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(
    run_dir: Path,
    args: list[str],
    *,
    budget_s: float | None = None,
    per_rank_args: dict[int, list[str]] | None = None,
    world: int = 2,
    save_every: str | None = None,
) -> list[subprocess.CompletedProcess[str]]:
    """Start all ranks of one segment and wait for them."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = python_env(
            RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            BATCHER_RUN_DIR=str(run_dir),
            BATCHER_MARGIN_S="0.2",
            BATCHER_PROGRESS_S="0",
            **_HARNESS_ARGS,
        )
        if budget_s is not None:
            env["TEST_BUDGET_S"] = str(budget_s)
        if save_every is not None:
            env["BATCHER_SAVE_EVERY"] = save_every
        argv = [sys.executable, "-c", _LAUNCH, str(TRAIN_DDP), *args, *(per_rank_args or {}).get(rank, [])]
        procs.append(
            subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["_seq"] for r in rows] == list(range(len(rows)))
    return [r["loss"] for r in rows]


def same_final_state(a: Path, b: Path) -> None:
    x, y = batcher.load_checkpoint(a), batcher.load_checkpoint(b)
    assert x["done"] and y["done"]
    for name in ("model", "optimizer"):
        sa, sb = x["objects"][name], y["objects"][name]
        flat_a = sa["state"] if name == "optimizer" else sa
        flat_b = sb["state"] if name == "optimizer" else sb
        for k in flat_a:
            va, vb = flat_a[k], flat_b[k]
            if isinstance(va, dict):
                assert all(torch.equal(va[i], vb[i]) for i in va), (name, k)
            else:
                assert torch.equal(va, vb), (name, k)
    assert x["values"] == y["values"]


def workflow_copy(workdir: Path, experiments: dict[str, Any]) -> Path:
    """A runnable copy of the workflow in ``workdir``: Snakefile, rules and profiles, the test train
    scripts under scripts/, and a config.yaml holding ``experiments``."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    (workdir / "scripts").mkdir()
    for script in (TRAIN_FULL, TRAIN_DDP):
        shutil.copy(script, workdir / "scripts" / script.name)
    (workdir / "config.yaml").write_text(yaml.safe_dump({"experiments": experiments}))
    return workdir


_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")


def slurm_jobs(
    workdir: Path, columns: dict[str, str], timeout_s: float = 60, *, untaken: bool = False
) -> list[dict[str, str]]:
    """The Slurm jobs submitted from ``workdir`` (oldest first; ``columns`` maps each row's keys to
    sacct fields), once accounting holds all of them as ended and stops changing. Pre-submitted
    successors that no segment took over (cancelled when the workflow ended, profiles/das5's
    presubmit) are left out unless ``untaken``: a job is one of those when it was cancelled and no
    status or heartbeat file of the workflow's runs names it as its attempt.

    Jobs are told apart by their work directory, not by ids after a mark: slurmdbd records jobs
    asynchronously, so a job that an earlier test submitted and cancelled seconds before can appear
    after the mark was taken."""
    argv = [
        "sacct",
        "-n",
        "-X",
        "-P",
        "-S",
        "now-2hours",
        "-o",
        ",".join(["WorkDir", "State", "JobID", *columns.values()]),
    ]
    deadline, previous = time.monotonic() + timeout_s, None
    while True:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
        rows = [line.split("|") for line in out.splitlines() if line]
        mine = [row[1:] for row in rows if row[0] == str(workdir.resolve())]
        settled = all(state.startswith(_ENDED) for state, *_ in mine)
        if settled and mine == previous:
            ran = _attempts(workdir)
            kept = [row for row in mine if untaken or not row[0].startswith("CANCELLED") or row[1] in ran]
            return [dict(zip(columns, row[2:], strict=True)) for row in kept]
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm accounting for {workdir} never settled: {mine}")
        previous = mine if settled else None
        time.sleep(1)


def _attempts(workdir: Path) -> set[str]:
    """The Slurm jobs that ran a segment of ``workdir``'s runs (their status and heartbeat files)."""
    ran = {p.stem.rpartition("-")[2] for p in (workdir / "runs").glob("*/*/heartbeat/seg-*.json")}
    for status in (workdir / "runs").glob("*/*/status/seg-*.json"):
        ran.add(str(json.loads(status.read_text()).get("attempt")))
    return ran


def checkpoint_state(v: float) -> dict[str, Any]:
    """A small state to checkpoint, different for every ``v``."""
    return {"w": torch.full((64,), v), "n": int(v)}


def filled_store(tmp_path: Path, count: int = 3, keep: int = 3) -> Any:
    """A checkpoint store in ``tmp_path/ckpt`` holding ``count`` saves (steps 10, 20, ...)."""
    from batcher.ckpt.store import CheckpointStore

    store = CheckpointStore(tmp_path / "ckpt", keep=keep)
    for i in range(1, count + 1):
        store.save(checkpoint_state(i), step=i * 10, segment=i)
    store.wait_for_cleanup()  # old checkpoints are deleted on a background thread
    return store


def ledger_epochs(launches: list[Path]) -> dict[int, Counter[int]]:
    """How often each sample index was trained on, per epoch, from the ledgers of
    ``tests/scripts/train_ddp.py --ledger`` (``launches``: each attempt's path prefix, in the
    order they ran; its ranks wrote ``<prefix>.rank<R>``). A step's records are those of the
    latest attempt that ran it: an attempt's steps after its last checkpoint were run again by
    the next one, which starts at that checkpoint's step."""
    by_step: dict[int, tuple[int, list[int]]] = {}  # step -> (epoch, indices of every rank)
    for prefix in launches:
        rows = [
            json.loads(line)
            for f in sorted(prefix.parent.glob(f"{prefix.name}.rank*"))
            for line in f.read_text().splitlines()
        ]
        if not rows:
            continue
        first = min(r["step"] for r in rows)
        by_step = {s: v for s, v in by_step.items() if s < first}
        for r in rows:
            by_step.setdefault(r["step"], (r["epoch"], []))[1].extend(r["idx"])
    epochs: dict[int, Counter[int]] = {}
    for epoch, idx in by_step.values():
        epochs.setdefault(epoch, Counter()).update(idx)
    return epochs
