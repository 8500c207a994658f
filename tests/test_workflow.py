"""The real `snakemake --profile profiles/local` on a temporary copy of the workflow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, python_env
from helpers import TRAIN_FULL, run_segment, sleep_per_step, workflow_copy

import batcher
from batcher.run.layout import ResultsLayout, RunLayout
from batcher.run.summary import read_summary
from batcher.workflow.account import account_run

pytestmark = pytest.mark.workflow

# 16 s jobs: a job's window counts from its start, import torch included (3-4 s here, and a
# segment that cannot take one step fails: 12 s windows did so on a machine 3x slower)
POLICY = ["--config", "policy=fixed:16s", "margin_s=1"]
SLEEP = sleep_per_step(segments=3, budget_s=16, steps=96)  # 6 epochs of 16 steps in 16 s slots
EXPERIMENTS = {
    "a": {"script": "scripts/train_full.py", "args": {"step-sleep": SLEEP}, "length": 6},
    "b": {"script": "scripts/train_full.py", "args": {"step-sleep": SLEEP, "hidden": 8}, "length": 6},
}


def snakemake(workdir: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/local", *POLICY, *extra],
        cwd=workdir,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def write_config(workdir: Path, experiments: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump({"experiments": experiments}))


def statuses(workdir: Path, exp: str) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in sorted((workdir / "runs" / exp).glob("*/status/seg-*.json"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "workflow", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    (workdir / "scripts").mkdir()
    shutil.copy(TRAIN_FULL, workdir / "scripts" / "train_full.py")
    write_config(workdir, EXPERIMENTS)
    snakemake(workdir)
    return workdir


def _copy(finished: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(finished, dest, symlinks=True)
    return dest


def test_chain_reaches_done_and_equals_an_uninterrupted_run(finished: Path, tmp_path: Path) -> None:
    for exp in ("a", "b"):
        results = ResultsLayout.of(exp, base=finished)
        summary = read_summary(results.summary)
        assert summary.segments >= 3, summary
        published = str(ResultsLayout.of(exp).state)  # relative to the workflow's folder
        assert summary.steps == 96 and summary.checkpoint.file == published
        assert summary.checkpoint.source and published in (summary.load_weights or "")
        segs = [json.loads(p.read_text()) for p in statuses(finished, exp)]
        assert [s["status"] for s in segs] == ["unfinished"] * (len(segs) - 1) + ["done"]
        assert all(s["stop_reason"] == "deadline" for s in segs[:-1])
    whole = run_segment(TRAIN_FULL, ["--step-sleep", "0", "--epochs", "6"], tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    expected = batcher.load_checkpoint(tmp_path / "whole")["objects"]["model"]
    final = torch.load(ResultsLayout.of("a", base=finished).state, weights_only=True)["objects"]["model"]
    assert expected.keys() == final.keys()
    assert all(torch.equal(expected[k], final[k]) for k in expected)


def test_restart_of_a_finished_chain_does_nothing(finished: Path) -> None:
    before = statuses(finished, "a")
    out = snakemake(finished, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr
    assert statuses(finished, "a") == before


def test_added_experiment_runs_alone(finished: Path, tmp_path: Path) -> None:
    workdir = _copy(finished, tmp_path)
    before = {e: statuses(workdir, e) for e in ("a", "b")}
    write_config(workdir, {**EXPERIMENTS, "c": {"script": "scripts/train_full.py", "length": 1}})
    snakemake(workdir)
    assert {e: statuses(workdir, e) for e in ("a", "b")} == before
    assert read_summary(ResultsLayout.of("c", base=workdir).summary).steps == 16


def test_raised_length_continues_without_repeating_a_step(finished: Path, tmp_path: Path) -> None:
    workdir = _copy(finished, tmp_path)
    before_b = statuses(workdir, "b")
    old = len(statuses(workdir, "a"))
    write_config(workdir, {**EXPERIMENTS, "a": {**EXPERIMENTS["a"], "length": 7}})
    snakemake(workdir)
    segs = [json.loads(p.read_text()) for p in statuses(workdir, "a")]
    assert len(segs) > old
    assert sum(s["steps_this_segment"] for s in segs[old:]) == 16  # only the new epoch
    (run_dir,) = (workdir / "runs" / "a").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(112))
    assert read_summary(ResultsLayout.of("a", base=workdir).summary).steps == 112
    assert statuses(workdir, "b") == before_b


def test_changed_hyper_parameter_retrains_only_that_experiment(finished: Path, tmp_path: Path) -> None:
    workdir = _copy(finished, tmp_path)
    before_a = statuses(workdir, "a")
    old_b = sorted(p.name for p in (workdir / "runs" / "b").iterdir())
    write_config(workdir, {**EXPERIMENTS, "b": {**EXPERIMENTS["b"], "args": {"hidden": 12}, "length": 1}})
    snakemake(workdir)
    assert statuses(workdir, "a") == before_a
    runs_b = sorted(p.name for p in (workdir / "runs" / "b").iterdir())
    assert len(runs_b) == 2 and set(old_b) < set(runs_b)  # the old run is kept, never mixed
    summary = read_summary(ResultsLayout.of("b", base=workdir).summary)
    assert summary.steps == 16 and summary.run.root.name not in old_b


def test_bad_config_stops_snakemake_with_the_message(finished: Path, tmp_path: Path) -> None:
    workdir = _copy(finished, tmp_path)
    (workdir / "config.yaml").write_text(
        "experiments:\n  a:\n    script: scripts/train_full.py\n    lenght: 3\n"
    )
    out = snakemake(workdir, "-n", check=False)
    assert out.returncode != 0
    assert "line 4: unknown key 'experiments.a.lenght'" in out.stdout + out.stderr


def test_bad_save_every_stops_snakemake_before_any_job(finished: Path, tmp_path: Path) -> None:
    workdir = _copy(finished, tmp_path)
    out = snakemake(workdir, "-n", "--config", "save_every=sometimes", check=False)
    assert out.returncode != 0
    assert "save_every='sometimes' cannot be read" in out.stdout + out.stderr


def test_report_has_curves_timelines_and_the_metrics_table(finished: Path) -> None:
    for exp in ("a", "b"):
        assert (finished / "results" / exp / "curves.png").read_bytes().startswith(b"\x89PNG")
        assert (finished / "results" / exp / "timeline.png").read_bytes().startswith(b"\x89PNG")
    table = (finished / "results" / "summary.tsv").read_text().splitlines()
    assert table[0].startswith("experiment\tsegments\ttrain_seconds") and len(table) == 3
    snakemake(finished, "--report", "report.html")
    html = (finished / "report.html").read_text(errors="replace")
    assert "curves.png" in html and "summary.tsv" in html and "timeline.png" in html


def test_the_time_account_of_a_local_chain(finished: Path) -> None:
    """#29 under profiles/local: no queue, every attempt seen, its categories its wall time."""
    (run,) = (finished / "runs" / "a").iterdir()
    account = account_run(RunLayout(run))
    segs = [json.loads(p.read_text()) for p in statuses(finished, "a")]
    assert [a.segment for a in account.attempts] == [s["segment"] for s in segs]
    for a, s in zip(account.attempts, segs, strict=True):
        assert a.attempt == s["attempt"] and a.attempt.startswith("pid") and a.seconds["queued"] == 0
        assert sum(a.seconds.values()) == pytest.approx(a.wall)
        assert a.seconds["imports"] > 0 and a.seconds["train"] > 0 and a.seconds["lost"] == 0
        # the same as the segment's own count: its wall time less loading and saving
        assert a.seconds["train"] == pytest.approx(s["seconds"]["train"], abs=0.5)
    assert 0 < account.goodput < 1  # type: ignore[operator]


def test_command_line_config_keeps_the_profile_settings(tmp_path: Path) -> None:
    """`--config keep=3` overrides one key; profiles/das5's policy, signal and GPU constraint stay
    (a profile's `config:` list was replaced whole, and jobs fell back to 24 h without a constraint)."""
    wd = workflow_copy(
        tmp_path / "wf", {"g": {"script": "scripts/train_full.py", "length": 1, "resources": {"gpus": 1}}}
    )
    argv = [sys.executable, "-m", "snakemake", "--profile", "profiles/das5", "-n"]
    pinned = "policy_now=2026-11-25T10:00:00+01:00"  # a Wednesday morning: a 14-minute DAS-5 job
    done = subprocess.run(
        [*argv, "--config", "keep=3", pinned], cwd=wd, env=python_env(), capture_output=True, text=True
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "runtime=14," in out and "--signal=URG@60" in out and "constraint=TitanX" in out, out[-3000:]
