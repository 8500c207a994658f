"""Two ranks (gloo, CPU) stop at the same step, save once, and resume bit for bit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import python_env
from helpers import losses, run_ranks, same_final_state, sleep_per_step, workflow_copy

import batcher
from batcher.run.layout import ResultsLayout
from batcher.run.summary import read_summary


@pytest.mark.parametrize("mode", ["ddp", "fsdp", "ddp-elastic"])
def test_two_ranks_segmented_equals_uninterrupted(tmp_path: Path, mode: str) -> None:
    """DDP (rank 0 writes one file) and FSDP (every rank writes its shards through
    torch.distributed.checkpoint into one committed folder) both resume bit for bit: after a
    SIGKILL of every rank as a periodic background save starts, and across deadline stops with
    periodic saves in between; DDP with batcher.ElasticSampler too (on one world size)."""
    sleep = sleep_per_step(segments=3, budget_s=4.0, steps=160)  # 10 epochs of 16 steps per rank
    extra = {"ddp": [], "fsdp": ["--fsdp"], "ddp-elastic": ["--elastic"]}[mode]
    args = ["--epochs", "10", "--step-sleep", str(sleep), *extra]
    whole = run_ranks(tmp_path / "whole", args)
    assert all(p.returncode == 0 for p in whole), [p.stderr[-2000:] for p in whole]
    # first a node failure: every rank SIGKILLed as step 14 begins, when the background save of
    # step 14 has just started (under FSDP in DCP's writer): the run resumes from step 7 or 14
    killed = run_ranks(tmp_path / "cut", [*args, "--kill-at-step", "14"], save_every="7 steps")
    assert -9 in [p.returncode for p in killed], [p.stderr[-2000:] for p in killed]
    assert batcher.load_checkpoint(tmp_path / "cut")["step"] in (7, 14)
    segments = 0
    for _ in range(30):
        procs = run_ranks(tmp_path / "cut", args, budget_s=4.0, save_every="7 steps")  # background saves too
        assert [p.returncode for p in procs] == [0, 0], [p.stderr[-2000:] for p in procs]
        segments += 1
        status = json.loads(max((tmp_path / "cut" / "status").glob("seg-*.json")).read_text())
        if status["status"] == "done":
            break
        assert "in the background" in procs[0].stderr  # a full segment also saved periodically
        # both ranks stopped at the same step
        stops = [line for p in procs for line in p.stderr.splitlines() if "stopped:" in line]
        where = {re.search(r"at (epoch \d+ batch \d+ \(step \d+)", s).group(1) for s in stops}  # type: ignore[union-attr]
        assert len(stops) == 2 and len(where) == 1, stops
    assert segments >= 3
    same_final_state(tmp_path / "whole", tmp_path / "cut")
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")


def test_signal_to_one_rank_stops_both_cleanly(tmp_path: Path) -> None:
    procs = run_ranks(tmp_path / "run", ["--epochs", "2"], per_rank_args={1: ["--signal-at-step", "5"]})
    assert [p.returncode for p in procs] == [0, 0], [p.stderr[-2000:] for p in procs]
    status = json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())
    assert status["status"] == "unfinished" and status["step"] == 5
    assert status["stop_reason"] == "signal on another rank"  # rank 0 writes; rank 1 got the signal
    assert "stopped: signal SIGUSR1" in procs[1].stderr
    rest = run_ranks(tmp_path / "run", ["--epochs", "2"])
    assert [p.returncode for p in rest] == [0, 0]
    whole = run_ranks(tmp_path / "whole", ["--epochs", "2"])
    assert [p.returncode for p in whole] == [0, 0]
    same_final_state(tmp_path / "whole", tmp_path / "run")
    assert losses(tmp_path / "whole") == losses(tmp_path / "run")


# DDP's rank 0 writes like a single process (tests/test_reliability.py kills that 50 times)
@pytest.mark.parametrize(("mode", "victim"), [("ddp", 1), ("fsdp", 0), ("fsdp", 1)])
def test_sigkill_of_one_rank_mid_save_keeps_the_last_checkpoint(
    tmp_path: Path, mode: str, victim: int
) -> None:
    """Rank 0 killed after writing its temp file (DDP) or the folder's last file (FSDP), or rank 1
    killed during the save: the others fail promptly, the last committed checkpoint loads, and the
    run finishes as if nothing happened."""
    sleep = sleep_per_step(segments=2, budget_s=4.0, steps=96)  # the first segment stops unfinished
    args = ["--epochs", "6", "--step-sleep", str(sleep), *(["--fsdp"] if mode == "fsdp" else [])]
    first = run_ranks(tmp_path / "run", args, budget_s=4.0)
    assert [p.returncode for p in first] == [0, 0], [p.stderr[-2000:] for p in first]
    before = batcher.load_checkpoint(tmp_path / "run")["step"]
    killed = run_ranks(tmp_path / "run", args, budget_s=4.0, per_rank_args={victim: ["--kill-in-save"]})
    assert killed[victim].returncode == -9
    assert killed[1 - victim].returncode != 0  # a peer that died is an error, not a hang
    ckpt = tmp_path / "run" / "ckpt"
    after = batcher.load_checkpoint(tmp_path / "run")["step"]
    if victim == 0:  # died between writing and committing: the temp file is left, the last good one loads
        assert any(p.name.startswith(".step-") for p in ckpt.iterdir())
        assert after == before
    elif mode == "ddp":  # rank 0 committed its save before it noticed
        assert after > before
    else:  # FSDP: rank 1's shards were never written, so nothing was committed
        assert after == before
    for _ in range(10):
        rest = run_ranks(tmp_path / "run", args)
        assert [p.returncode for p in rest] == [0, 0], [p.stderr[-2000:] for p in rest]
        if json.loads(max((tmp_path / "run" / "status").glob("seg-*.json")).read_text())["status"] == "done":
            break
    whole = run_ranks(tmp_path / "whole", args)
    assert [p.returncode for p in whole] == [0, 0]
    same_final_state(tmp_path / "whole", tmp_path / "run")
    assert losses(tmp_path / "whole") == losses(tmp_path / "run")


@pytest.mark.parametrize(
    ("save_every", "nth", "what", "kept"),
    [
        ("4 steps", "2", "saving step 8 in the background failed", 4),  # the second periodic save
        ("off", "1", "could not write checkpoint", None),  # seg.done()'s save, made at once
    ],
    ids=["background", "final"],
)
def test_a_failed_save_stops_every_rank_with_the_save_error(
    tmp_path: Path, save_every: str, nth: str, what: str, kept: int | None
) -> None:
    """Rank 0's save hits a full disk: both ranks stop at the same boundary with SaveError (no rank
    left waiting in a collective), rank 1's error saying it was rank 0's; the last checkpoint is intact."""
    args = ["--epochs", "2", "--full-disk-at-save", nth]
    procs = run_ranks(tmp_path / "run", args, save_every=save_every)
    assert [p.returncode for p in procs] == [1, 1], [p.stderr[-2000:] for p in procs]  # uncaught SaveError
    assert what in procs[0].stderr and "disk is full" in procs[0].stderr
    assert f"rank 0: {what}" in procs[1].stderr
    assert not any("never called seg.done()" in p.stderr for p in procs)  # it was called, and failed
    if kept is None:
        assert not list((tmp_path / "run" / "ckpt").glob("step-*"))
    else:
        assert batcher.load_checkpoint(tmp_path / "run")["step"] == kept


def test_run_of_two_ranks_continues_on_one(tmp_path: Path) -> None:
    """DDP state is the same on every rank, so a run can move to fewer processes (with a warning)."""
    args = ["--epochs", "6", "--step-sleep", str(sleep_per_step(segments=2, budget_s=4.0, steps=96))]
    first = run_ranks(tmp_path / "run", args, budget_s=4.0)
    assert [p.returncode for p in first] == [0, 0], [p.stderr[-2000:] for p in first]
    first_status = json.loads((tmp_path / "run" / "status" / "seg-0000.json").read_text())
    assert first_status["status"] == "unfinished" and first_status["world_size"] == 2
    (alone,) = run_ranks(tmp_path / "run", args, world=1)
    assert alone.returncode == 0, alone.stderr[-2000:]
    # the workflow scales each segment's training by the ranks it had (batcher.workflow.width)
    assert json.loads(max((tmp_path / "run" / "status").glob("seg-*.json")).read_text())["world_size"] == 1
    assert "saved by 2 process(es) and resumes on 1" in alone.stderr
    final = batcher.load_checkpoint(tmp_path / "run")
    assert final["done"] and final["epoch"] == 6
    losses(tmp_path / "run")  # one contiguous log


#: an FSDP run that needs two segments of 4 s (96 steps)
FSDP_TWO_SEGMENTS = [
    "--fsdp",
    "--epochs",
    "6",
    "--step-sleep",
    str(sleep_per_step(segments=2, budget_s=4.0, steps=96)),
]


@pytest.mark.parametrize(("saved_on", "resumed_on"), [(2, 1), (1, 2)])
def test_fsdp_run_resumes_on_another_number_of_ranks(tmp_path: Path, saved_on: int, resumed_on: int) -> None:
    """DCP reshards FSDP state on load: the model and optimizer a segment starts from on M ranks
    are exactly the ones N ranks saved, and the run finishes there (the data order after a change
    of world size differs, as the warning says, so the run is not compared to an uninterrupted one)."""
    run = tmp_path / "run"
    args = FSDP_TWO_SEGMENTS
    first = run_ranks(run, args, budget_s=4.0, world=saved_on)
    assert all(p.returncode == 0 for p in first), [p.stderr[-2000:] for p in first]
    saved = batcher.load_checkpoint(run)  # the whole model and optimizer, assembled from the shards
    assert not saved["done"] and saved["step"] > 0
    dump = tmp_path / "start.pt"
    second = run_ranks(run, [*args, "--dump-start", str(dump)], world=resumed_on)
    assert all(p.returncode == 0 for p in second), [p.stderr[-2000:] for p in second]
    assert f"saved by {saved_on} process(es) and resumes on {resumed_on}" in second[0].stderr
    start = torch.load(dump, weights_only=True)
    model, opt = saved["objects"]["model"], saved["objects"]["optimizer"]
    assert sorted(start["model"]) == sorted(model) == ["0.bias", "0.weight", "3.bias", "3.weight"]
    assert all(torch.equal(start["model"][k], model[k]) for k in model)
    assert sorted(start["optimizer"]["state"]) == sorted(opt["state"])
    for name, moments in opt["state"].items():
        assert sorted(moments) == ["exp_avg", "exp_avg_sq", "step"]
        assert all(torch.equal(start["optimizer"]["state"][name][m], moments[m]) for m in moments), name
    final = batcher.load_checkpoint(run)
    assert final["done"] and final["epoch"] == 6


@pytest.mark.parametrize("rank", [0, 1])
def test_a_shard_damaged_for_one_rank_makes_every_rank_fall_back(tmp_path: Path, rank: int) -> None:
    """Each rank hashes only what it reads: its own shard file and the few items every rank needs
    (the optimizer's step counts and settings, which DCP writes once, at the start of the last
    rank's file; this small model's files are one piece each). Rank 0's damaged shard is found by rank 0 alone,
    and rank 1 learns it from the ranks' agreement; a damaged rank-1 file is read by both. Both
    resume from the previous checkpoint."""
    run = tmp_path / "run"
    args = FSDP_TWO_SEGMENTS
    first = run_ranks(run, args, budget_s=4.0, save_every="10 steps")
    assert [p.returncode for p in first] == [0, 0], [p.stderr[-2000:] for p in first]
    entries = json.loads((run / "ckpt" / "manifest.json").read_text())["checkpoints"]
    older, newest = entries[-2], entries[-1]
    assert sorted(newest["parts"]) == [".metadata", "__0_0.distcp", "__1_0.distcp", "rest.pt"]
    shard = run / "ckpt" / newest["file"] / f"__{rank}_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    expected = batcher.load_checkpoint(run)  # warns about the damaged one, assembles the older one
    assert expected["step"] == older["step"]
    dump = tmp_path / "start.pt"
    second = run_ranks(run, [*args, "--dump-start", str(dump)])
    assert [p.returncode for p in second] == [0, 0], [p.stderr[-2000:] for p in second]
    skip = f"skipping checkpoint step {newest['step']}: "
    assert f"{skip}{shard} fails its" in second[rank].stderr
    other = f"{skip}{shard} fails its" if rank == 1 else f"{skip}another rank found it damaged"
    assert other in second[1 - rank].stderr
    assert all(f"resumed from checkpoint {older['file']}" in p.stderr for p in second)
    start = torch.load(dump, weights_only=True)["model"]
    assert all(torch.equal(start[k], v) for k, v in expected["objects"]["model"].items())


@pytest.mark.workflow
def test_workflow_runs_two_tasks_per_segment(tmp_path: Path) -> None:
    """config `resources: {tasks: 2}` starts each segment with torchrun; an FSDP chain still equals
    one run, and results/E/final.pt holds the whole (unsharded) model."""
    exp = {
        "script": "scripts/train_ddp.py",
        "args": {"step-sleep": sleep_per_step(segments=2, budget_s=20, steps=64), "fsdp": True},
        "length": 4,
        "resources": {"tasks": 2},
    }
    wd = workflow_copy(tmp_path / "wf", {"ddp": exp})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "profiles/local",
            "--config",
            "policy=fixed:20s",
            "margin_s=1",
        ],
        cwd=wd,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = read_summary(ResultsLayout.of("ddp", base=wd).summary)
    assert summary.segments >= 2 and summary.steps == 64
    whole = run_ranks(tmp_path / "whole", ["--epochs", "4", "--fsdp"])
    assert [p.returncode for p in whole] == [0, 0]
    (run,) = (wd / "runs" / "ddp").iterdir()
    same_final_state(tmp_path / "whole", run)
    assert losses(tmp_path / "whole") == losses(run)
    published = torch.load(wd / "results" / "ddp" / "final.pt", weights_only=True)["objects"]["model"]
    expected = batcher.load_checkpoint(tmp_path / "whole")["objects"]["model"]
    assert sorted(published) == sorted(expected) == ["0.bias", "0.weight", "3.bias", "3.weight"]
    assert all(torch.equal(published[k], expected[k]) for k in expected)


def test_nodes_and_tasks_map_to_slurm_and_srun(tmp_path: Path) -> None:
    """profiles/das5: nodes x tasks ranks, one srun task each; profiles/local refuses nodes > 1."""
    exp = {"script": "scripts/train_ddp.py", "length": 2, "resources": {"nodes": 2, "tasks": 2, "gpus": 2}}
    wd = workflow_copy(tmp_path / "wf", {"big": exp})

    def dry(profile: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "snakemake", "--profile", profile, "-n", "-p"]
        return subprocess.run(argv, cwd=wd, env=python_env(), capture_output=True, text=True, timeout=300)

    das5 = dry("profiles/das5")
    assert das5.returncode == 0, das5.stderr[-3000:]
    out = das5.stdout + das5.stderr
    assert "nodes=2, tasks_per_node=2, tasks_per_gpu=0, mpi=srun" in out and "gres=gpu:2" in out
    assert "srun --nodes=2 --ntasks=4 --ntasks-per-node=2 --cpus-per-task=1 --kill-on-bad-exit=1" in out
    assert "RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS" in out
    local = dry("profiles/local")
    assert local.returncode != 0
    assert "asks for 2 nodes, but this profile runs on one machine" in local.stdout + local.stderr
