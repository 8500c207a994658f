"""The job's environment: one owner writes it (the workflow side), one reads it (the job)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

from batcher.job_env import JobEnv


def test_it_round_trips_and_leaves_out_what_is_not_set() -> None:
    job = JobEnv(run_dir="runs/a/1234abcd", segment="3", margin_s="5", save_every="500 steps")
    env = job.to_env()
    assert env == {
        "BATCHER_RUN_DIR": "runs/a/1234abcd",
        "BATCHER_SEGMENT": "3",
        "BATCHER_MARGIN_S": "5",
        "BATCHER_SAVE_EVERY": "500 steps",
    }
    assert JobEnv.from_env({**env, "PATH": "/bin", "BATCHER_KEEP": ""}) == job  # empty: not set
    assert JobEnv.variable("time_limit") == "BATCHER_TIME_LIMIT"
    assert set(JobEnv.names()) >= set(env)


def test_no_other_module_reads_or_builds_a_batcher_variable() -> None:
    """Names may appear in messages and docs; as a key of the environment only in job_env.py."""
    key = re.compile(r"""(\.get\(\s*|[\[{,]\s*|^\s*)["']BATCHER_[A-Z_]+["']\s*(\)|\]|:)""", re.M)
    sources = [p for p in (ROOT / "batcher").rglob("*.py") if p.name != "job_env.py"]
    sources += [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk"), *(ROOT / "workflow").rglob("*.py")]
    bad = [
        f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in sources for m in key.finditer(p.read_text())
    ]
    assert not bad, bad
    # and the check can fail
    assert key.search('x = env.get("BATCHER_RUN_DIR")') and key.search('{"BATCHER_SEGMENT": "1"}')


def test_the_workflow_writes_what_the_job_reads(tmp_path: Path) -> None:
    from batcher.api.settings import read_settings
    from batcher.workflow.experiments import load_experiments
    from batcher.workflow.launch import segment_command

    exp = load_experiments({"experiments": {"e": {"script": "train.py", "length": 3}}})["e"]
    cmd = segment_command(
        exp, segment=4, status_file=str(tmp_path / "s.json"), run_dir=str(tmp_path / "run"),
        settings={"margin_s": 5, "keep": 3, "save_every": "10m"}, python="python", minutes=14, threads=1,
    )  # fmt: skip
    env = dict(re.findall(r"(BATCHER_[A-Z_]+)=(\S+)", cmd))
    settings = read_settings({k: v.strip("'") for k, v in env.items() if not v.startswith('"$(')})
    assert (settings.segment, settings.margin_s, settings.keep) == (4, 5.0, 3)
    assert settings.save_every.seconds == 600 and settings.run.root == tmp_path / "run"
    assert settings.status_file == tmp_path / "s.json" and settings.experiment == "e"
