"""The benchmark scripts still run against the current code (they are not timed here).

Each is driven on a tiny input with its results folder pointed at a temporary one, so an API
change that breaks a benchmark fails the suite instead of the next person who re-runs it.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(name: str, monkeypatch: pytest.MonkeyPatch, out: Path) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(name)
    monkeypatch.setattr(module, "OUT", out)
    return module


def test_goodput_meets_its_target_in_every_slot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    goodput = _bench("goodput", monkeypatch, tmp_path)
    monkeypatch.setattr(goodput, "RUNS", 4)
    goodput.main()
    results = json.loads((tmp_path / "goodput.json").read_text())
    assert (tmp_path / "goodput.png").stat().st_size > 0
    for slot in results["slots"].values():
        assert slot["batcher"]["misses"] == 0


def test_checkpoint_io_measures_every_way(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checkpoint_io = _bench("checkpoint_io", monkeypatch, tmp_path)
    r = checkpoint_io.measure(1, blocks=2, per_block=1, settle_s=0.0)
    for key in ("plain_save", "store_save", "kept_save", "plain_load", "store_load"):
        assert r[key] > 0, key


def test_checkpoint_io_measures_a_two_rank_sharded_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two FSDP ranks in fresh interpreters; with 40 MB of model each rank's file spans several
    16 MiB pieces, and a rank hashes fewer bytes than the whole folder holds."""
    checkpoint_io = _bench("checkpoint_io", monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    r = checkpoint_io.measure_sharded(40, reps=1)
    assert all(r[k] > 0 for k in ("dcp", "whole", "pieces"))
    assert all(0 < mb < r["hashed_mb_whole_per_rank"] for mb in r["hashed_mb_pieces_by_rank"]), r


@pytest.mark.parametrize("naive", [False, True], ids=["batcher", "naive-chain"])
def test_workflow_scaling_restart_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, naive: bool
) -> None:
    """build() must produce a finished workflow: plan_seconds() exits if Snakemake would run a job."""
    workflow_scaling = _bench("workflow_scaling", monkeypatch, tmp_path)
    workdir = tmp_path / "wf"
    workdir.mkdir()
    workflow_scaling.build(workdir, 2, 3, naive=naive)
    assert workflow_scaling.plan_seconds(workdir, 1) > 0


@pytest.fixture(autouse=True)
def _forget_benchmark_modules() -> Iterator[None]:
    yield
    for name in ("goodput", "checkpoint_io", "workflow_scaling"):
        sys.modules.pop(name, None)


def test_background_save_measures_the_stall_and_the_slowdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    background_save = _bench("background_save", monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    r = background_save.stall(1, reps=1)
    assert r["sync_save_s"] > 0 and r["stall_s"] > 0 and r["background_write_s"] > 0
    s = background_save.slowdown(0.5, 0.1, 1, width=64, depth=2)
    assert s["saves"] >= 1 and s["seconds_never"] > 0 and s["slowdown_at_default"] >= 0


def test_resume_skip_measures_fresh_and_resumed_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    resume_skip = _bench("resume_skip", monkeypatch, tmp_path)
    r = resume_skip.plain(0, batches=10, fetch_s=0.0, reps=1)  # no workers: nothing forked from pytest
    assert r["fresh"] > 0 and all(r[f"resume_{p}"] > 0 for p in (10, 50, 90))


def test_contention_load_is_seeded_and_asks_for_more_than_it_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other user's load (not run here: it needs the two-node cluster) is the same for a seed."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    contention = importlib.import_module("contention")
    jobs = contention.load(1, 600.0)
    assert jobs == contention.load(1, 600.0) and jobs != contention.load(2, 600.0)
    assert jobs[0].at == 0 and jobs[-1].at < 600 and len(jobs) > 4
    assert {j.nodes for j in jobs} == {1, 2}
    assert all(j.limit_min * 60 >= j.run_s for j in jobs)
    sys.modules.pop("contention", None)
