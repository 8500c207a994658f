"""Two nodes for real: partition ``pair`` of the test cluster (``bash tests/slurm/cluster.sh up 2``),
nodes tb1 and tb2, each in its own network namespace with its own address and host name, sharing
the file system as a cluster shares its network file system. Jobs go through profiles/das5 with
``nodes: 2`` (launcher srun: one srun task per rank, across both nodes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch
import yaml
from conftest import python_env
from helpers import (
    ledger_epochs,
    losses,
    run_ranks,
    same_final_state,
    sleep_per_step,
    slurm_jobs,
    workflow_copy,
)

import batcher
from batcher.workflow.experiments import load_experiments

pytestmark = [pytest.mark.slurm, pytest.mark.multinode]


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module", autouse=True)
def pair() -> None:
    try:
        states = _sh("sinfo", "-h", "-p", "pair", "-N", "-o", "%N %t").split("\n")
    except (OSError, subprocess.SubprocessError) as exc:
        states = [f"no Slurm reachable: {exc}"]
    nodes = [line.split() for line in states if line.strip()]
    if len(nodes) != 2:
        pytest.fail(
            f"the test cluster has no two-node partition `pair` ({states}); start it with "
            "`bash tests/slurm/cluster.sh up 2` (root), or deselect these tests with -m 'not multinode'"
        )


def _slurm_jobs(workdir: Path) -> list[dict[str, str]]:
    return slurm_jobs(workdir, {"id": "JobID", "state": "State", "nodes": "NodeList"})


def _run(workdir: Path, *config: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "snakemake", "--profile", "profiles/das5", *options,
        "--set-resources", "segment:slurm_partition=pair",
        "--config", "policy=fixed:60s", "margin_s=5", "stop_signal=URG@1", *config,
    ]  # fmt: skip
    return subprocess.run(argv, cwd=workdir, env=python_env(), capture_output=True, text=True, timeout=900)


def _statuses(workdir: Path, exp: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "runs" / exp).glob("*/status/seg-*.json"))]


def _fsdp_segment_0(
    tmp_path: Path, resources: dict[str, int], args: dict[str, object], *config: str
) -> tuple[Path, dict, Path, Path]:
    """Experiment ``f``: tests/scripts/train_ddp.py under FSDP, 2 epochs (32 steps per rank on 2
    ranks), 0.2 s a step, signalled at step 12 (segment 0 ends there), dumping the state each segment
    starts from to dumps/seg-N.pt. Runs segment 0 through Slurm; returns the workflow copy, the
    experiment's spec, its run folder and the dumps folder."""
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    spec = {
        "script": "scripts/train_ddp.py",
        "args": {
            "fsdp": True,
            "step-sleep": 0.2,
            "signal-at-step": 12,
            "dump-start": str(dumps / "seg-{segment}.pt"),
            **args,
        },
        "length": 2,
        "resources": resources,
    }
    workdir = workflow_copy(tmp_path / "wf", {"f": spec})
    run_id = load_experiments({"policy": "fixed:60s", "experiments": {"f": spec}})["f"].run_id
    first = _run(workdir, *config, options=(f"runs/f/{run_id}/status/seg-0000.json",))
    assert first.returncode == 0, first.stderr[-4000:]
    return workdir, spec, workdir / "runs" / "f" / run_id, dumps


def test_two_node_chain_survives_a_one_node_signal_and_a_kill_in_save(tmp_path: Path) -> None:
    """A chain of 2-node jobs (one rank per node) equals an uninterrupted 2-rank run, although
    1. the stop signal reaches the rank on tb2 only (it signals itself after step 20): both ranks
       stop at step 20, and segment 0 ends by that signal;
    2. the rank on tb2 is SIGKILLed in segment 1's save: srun ends the job step, the job FAILS,
       Snakemake retries it, and the retry resumes from the last committed checkpoint."""
    once = tmp_path / "killed-once"
    exp = {
        "n2": {
            "script": "scripts/train_ddp.py",
            "args": {
                "step-sleep": sleep_per_step(segments=2, budget_s=60, steps=80),
                "signal-at-step": 20,
                "kill-in-save": True,
                "kill-in-save-after": 21,  # the first save of segment 1
                "fault-rank": 1,
                "fault-once": str(once),
                "report-host": True,
            },
            "length": 5,  # 80 steps per rank
            "resources": {"nodes": 2, "tasks": 1},
        }
    }
    workdir = workflow_copy(tmp_path / "wf", exp)
    out = _run(workdir)
    assert out.returncode == 0, out.stderr[-4000:]
    assert once.exists(), "the kill never fired"
    jobs = _slurm_jobs(workdir)
    states = [j["state"] for j in jobs]
    assert states[1] == "FAILED" and set(states[:1] + states[2:]) == {"COMPLETED"}, jobs  # killed, retried
    assert {j["nodes"] for j in jobs} == {"tb[1-2]"}, jobs
    for job in jobs:  # one step, two tasks, on both nodes
        steps = _sh("sacct", "-n", "-P", "-j", job["id"], "-o", "JobID,NTasks,NodeList").split()
        assert f"{job['id']}.0|2|tb[1-2]" in steps, steps
    statuses = _statuses(workdir, "n2")
    assert statuses[0]["stop_reason"].startswith("signal"), statuses[0]
    assert statuses[0]["step"] == 20, statuses[0]  # rank 0 was never signalled, yet stopped there too
    assert statuses[-1]["status"] == "done"
    logs = "".join(p.read_text() for p in sorted((workdir / "runs" / "n2").glob("*/logs/seg-*.log")))
    assert "rank 0 of 2 on tb1 (10.77.0.11)" in logs and "rank 1 of 2 on tb2 (10.77.0.12)" in logs
    first = next((workdir / "runs" / "n2").glob("*/logs/seg-0000.log")).read_text()
    assert "[batcher rank 0] stopped: signal on another rank at epoch 1 batch 4 (step 20," in first
    retry = next((workdir / "runs" / "n2").glob("*/logs/seg-0001.log")).read_text()  # the retry's log
    assert "resumed from checkpoint" in retry

    whole = run_ranks(tmp_path / "whole", ["--epochs", "5"])
    assert [p.returncode for p in whole] == [0, 0]
    (run,) = (workdir / "runs" / "n2").iterdir()
    same_final_state(tmp_path / "whole", run)
    assert losses(tmp_path / "whole") == losses(run)


@pytest.mark.parametrize("tasks", [1, 2], ids=["2x1", "2x2"])
def test_fsdp_run_moves_from_two_nodes_to_two_tasks_on_one(tmp_path: Path, tasks: int) -> None:
    """An FSDP run whose segment 0 ran as 2 nodes x 1 or 2 tasks goes on as 1 node x 2 tasks (the
    experiment's resources edited in between; the run folder stays, as its id does not depend
    on resources):
    1. segment 0's job is laid out as its step: ranks 0..tasks-1 on tb1, the next ones on tb2, each
       knowing its local rank;
    2. the model and optimizer segment 1 starts from (2 or 4 shards read by 2 ranks) equal the ones
       segment 0 saved."""
    workdir, spec, run, dumps = _fsdp_segment_0(
        tmp_path, {"nodes": 2, "tasks": tasks}, {"report-host": True}
    )  # segment 0 ends at step 12, mid-epoch (epoch 0 on 2 ranks, 1 on 4: 16 steps per rank)
    saved = batcher.load_checkpoint(run)
    assert not saved["done"]
    (workdir / "config.yaml").write_text(
        yaml.safe_dump({"experiments": {"f": {**spec, "resources": {"nodes": 1, "tasks": 2}}}})
    )
    rest = _run(workdir)
    assert rest.returncode == 0, rest.stderr[-4000:]
    statuses = _statuses(workdir, "f")
    assert len(statuses) >= 2 and statuses[-1]["status"] == "done"
    jobs = _slurm_jobs(workdir)
    assert len(jobs) == len(statuses) and {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    assert jobs[0]["nodes"] == "tb[1-2]" and all(j["nodes"] in ("tb1", "tb2") for j in jobs[1:]), jobs
    steps = _sh("sacct", "-n", "-P", "-j", jobs[0]["id"], "-o", "JobID,NTasks,NodeList").split()
    assert f"{jobs[0]['id']}.0|{2 * tasks}|tb[1-2]" in steps, steps
    first_log = (run / "logs" / "seg-0000.log").read_text()
    for rank in range(2 * tasks):
        node, local = rank // tasks + 1, rank % tasks
        where = f"rank {rank} of {2 * tasks} on tb{node} (10.77.0.1{node}), local rank {local} of {tasks}"
        assert where in first_log, first_log[-3000:]
    for job in jobs[1:]:  # one job step whose 2 tasks are the ranks, on one node
        steps = _sh("sacct", "-n", "-P", "-j", job["id"], "-o", "JobID,NTasks,AllocCPUS").split()
        (step,) = [s for s in steps if s.startswith(f"{job['id']}.0|")]
        assert step.split("|")[1] == "2" and int(step.split("|")[2]) >= 2, steps  # a CPU per rank
    logs = sorted(run.glob("logs/seg-*.log"))
    assert all("[batcher rank 1]" in log.read_text() for log in logs)
    start = torch.load(dumps / "seg-1.pt", weights_only=True)
    model, opt = saved["objects"]["model"], saved["objects"]["optimizer"]
    assert sorted(start["model"]) == sorted(model)
    assert all(torch.equal(start["model"][k], model[k]) for k in model)
    for name, moments in opt["state"].items():
        assert all(torch.equal(start["optimizer"]["state"][name][m], moments[m]) for m in moments), name


def test_a_shard_damaged_on_the_first_node_makes_both_nodes_fall_back(tmp_path: Path) -> None:
    """An FSDP run of 2 nodes x 1 task whose newest checkpoint has a damaged shard of rank 0 (the
    rank on tb1): rank 0 finds it by hashing what it reads, rank 1 on tb2 learns it from the ranks'
    agreement, and both resume from the previous checkpoint, which the resumed model equals."""
    workdir, _, run, dumps = _fsdp_segment_0(
        tmp_path,
        {"nodes": 2, "tasks": 1},
        {"signal-once": str(tmp_path / "signalled")},  # segment 1, resumed from step 8, goes on
        "save_every=4 steps",
    )  # segment 0 ends at step 12 with checkpoints of steps 4, 8 and 12
    entries = json.loads((run / "ckpt" / "manifest.json").read_text())["checkpoints"]
    older, newest = entries[-2], entries[-1]
    assert (older["step"], newest["step"]) == (8, 12), entries
    shard = run / "ckpt" / newest["file"] / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="fails its"):
        expected = batcher.load_checkpoint(run)  # the older one, assembled from its shards
    assert expected["step"] == older["step"]
    rest = _run(workdir, "save_every=4 steps")
    assert rest.returncode == 0, rest.stderr[-4000:]
    assert _statuses(workdir, "f")[-1]["status"] == "done"
    log = (run / "logs" / "seg-0001.log").read_text()
    skip = f"skipping checkpoint step {newest['step']}: "
    assert f"[batcher rank 0] WARNING: {skip}{shard.relative_to(workdir)} fails its" in log, log[-3000:]
    assert f"[batcher rank 1] WARNING: {skip}another rank found it damaged" in log, log[-3000:]
    assert f"resumed from checkpoint {older['file']}" in log
    start = torch.load(dumps / "seg-1.pt", weights_only=True)["model"]
    assert all(torch.equal(start[k], v) for k, v in expected["objects"]["model"].items())


def test_an_elastic_width_runs_each_segment_on_the_nodes_it_got_and_trains_each_sample_once(
    tmp_path: Path,
) -> None:
    """``nodes: "1-2"`` (elastic width) through profiles/das5 (slurm-flat): each segment is
    submitted for both nodes first and runs on what Slurm gives it. Segment 0 gets both nodes;
    while another user's job holds tb2, segment 1 waits its ``narrow_after`` (20 s here) for both,
    is then let start on 1-2 nodes (``scontrol update NumNodes``) and starts on tb1 alone instead
    of waiting for the other job's end; the rest run on both again. The run (DDP, batcher.ElasticSampler over 400
    samples, 8 per rank and step, stopped by the 60 s limit wherever it falls) trains on every
    sample of every epoch exactly once (the ledger), across both changes of world size."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    spec = {
        "script": "scripts/train_ddp.py",
        "args": {"elastic": True, "samples": 400, "ledger": str(ledger / "l"), "step-sleep": 0.9},
        "length": 5,  # 25 steps an epoch on 2 ranks, 50 on 1; about 53 steps a 60 s segment
        "resources": {"nodes": "1-2", "tasks": 1},
    }
    workdir = workflow_copy(tmp_path / "wf", {"el": spec})
    run_id = load_experiments({"policy": "fixed:60s", "experiments": {"el": spec}})["el"].run_id
    status = f"runs/el/{run_id}/status/seg-{{:04d}}.json"
    first = _run(workdir, options=(status.format(0),))
    assert first.returncode == 0, first.stderr[-4000:]
    blocker = _sh(
        "sbatch", "--parsable", "-p", "pair", "-w", "tb2", "--exclusive", "--mem=100", "-J", "other-user",
        "-t", "5", "-o", "/dev/null", "--wrap", "sleep 300",
    ).strip()  # fmt: skip
    try:
        second = _run(workdir, "narrow_after=20s", options=(status.format(1),))
        assert second.returncode == 0, second.stderr[-4000:]
        assert "for its full width; it may now start on 1-2 nodes (narrow_after)" in second.stderr
    finally:
        _sh("scancel", blocker)
    rest = _run(workdir)
    assert rest.returncode == 0, rest.stderr[-4000:]
    jobs = slurm_jobs(
        workdir, {"id": "JobID", "state": "State", "nodes": "NodeList", "submit": "Submit", "start": "Start"}
    )
    assert [j["nodes"] for j in jobs[:2]] == ["tb[1-2]", "tb1"] and jobs[2]["nodes"] == "tb[1-2]", jobs
    waited = datetime.fromisoformat(jobs[1]["start"]) - datetime.fromisoformat(jobs[1]["submit"])
    assert 20 <= waited.total_seconds() < 60, jobs[1]  # its 20 s for both nodes, not the blocker's 300 s
    assert {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    statuses = _statuses(workdir, "el")
    assert len(statuses) == len(jobs) and statuses[-1]["status"] == "done"
    assert all(s["status"] == "unfinished" and s["stop_reason"] == "deadline" for s in statuses[:-1])
    logs = [(workdir / "runs" / "el" / run_id / "logs" / f"seg-{k:04d}.log").read_text() for k in (1, 2)]
    assert "saved by 2 process(es) and resumes on 1" in logs[0] and "resumes on 2" in logs[1], logs
    epochs = ledger_epochs([ledger / f"l.job{j['id']}" for j in jobs])
    assert sorted(epochs) == [0, 1, 2, 3, 4]
    for epoch, seen in epochs.items():
        assert sorted(seen) == list(range(400)), f"epoch {epoch} left out {set(range(400)) - set(seen)}"
        assert set(seen.values()) == {1}, f"epoch {epoch} repeated {[i for i, c in seen.items() if c > 1]}"
    # the world size changed mid-epoch (a segment stopped at an epoch's end would prove less)
    assert statuses[0]["batch"] > 0 and statuses[1]["batch"] > 0, statuses[:2]
