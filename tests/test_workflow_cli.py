"""`batcher status`, `batcher policy` and `batcher plot` on a run folder made by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from batcher.run.status import write_status
from batcher.workflow.cli import main
from batcher.workflow.experiments import load_experiments


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / "workflow").mkdir()
    shutil.copytree(ROOT / "workflow" / "schemas", tmp_path / "workflow" / "schemas")
    config = {
        "policy": "fixed:10m",
        "experiments": {
            "done-one": {"script": "train.py", "length": 2},
            "half": {"script": "train.py", "length": 10},
            "new": {"script": "train.py", "length": 3},
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    exps = load_experiments(config)
    for name, epochs in (("done-one", [1, 2]), ("half", [2, 5])):
        run = tmp_path / "runs" / name / exps[name].run_id
        for i, epoch in enumerate(epochs):
            done = name == "done-one" and i == len(epochs) - 1
            write_status(
                run / "status" / f"seg-{i:04d}.json",
                {
                    "experiment": name,
                    "segment": i,
                    "status": "done" if done else "unfinished",
                    "stop_reason": "finished" if done else "deadline",
                    "epoch": epoch,
                    "batch": 0,
                    "step": epoch * 10,
                    "steps_this_segment": 10 * (epoch - (epochs[i - 1] if i else 0)),
                    "total": exps[name].length,
                    "progress": epoch / exps[name].length,
                    "started": f"2026-11-25T1{i}:00:00+00:00",
                    "ended": f"2026-11-25T1{i}:09:00+00:00",
                    "seconds": {"wall": 540.0, "train": 500.0, "load": 1.0, "save": 2.0},
                },
            )
        rows = [
            {"_seq": k, "step": k, "segment": 0 if k < 10 else 1, "loss": 1.0 / (k + 1), "acc": k / 20}
            for k in range(20)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wd = _workdir(tmp_path)
    assert (
        main(["status", "--config", str(wd / "config.yaml"), "--json", "--at", "2026-11-25T12:00+00:00"]) == 0
    )
    rows = {r["experiment"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["done-one"]["state"] == "done" and rows["done-one"]["progress"] == 1.0
    assert rows["half"]["state"] == "unfinished" and rows["half"]["progress"] == 0.5
    assert rows["half"]["segments"] == 2 and rows["half"]["last_stop"] == "deadline"
    # 5 epochs took 1000 s of training: 1000 s more, 10-minute slots with 40 s+15 s overhead
    assert rows["half"]["eta_segments"] == 2
    assert rows["new"]["state"] == "not started" and rows["new"]["eta"] is None


def test_status_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wd = _workdir(tmp_path)
    assert main(["status", "--config", str(wd / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "experiment" in out and "ETA" in out
    assert "done-one" in out and "finished" in out and "5/10 (50%)" in out and "not started" in out


def test_status_without_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no config at" in capsys.readouterr().err


def test_policy_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--policy", "das5", "--at", "2026-11-27T19:59+01:00"]) == 0
    out = capsys.readouterr().out
    assert "14m 00s" in out and "next change Fri 2026-11-27 20:00 CET (then 2d 11h 55m)" in out


def test_plot_writes_pngs_with_every_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wd = _workdir(tmp_path)
    out = wd / "plots"
    assert main(["plot", "--config", str(wd / "config.yaml"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "half.png: 2 curve(s)" in text and "summary.png: 2 curve(s) of 'loss'" in text
    for name in ("half.png", "done-one.png", "summary.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


@pytest.mark.parametrize(
    ("at", "ends"),
    [
        ("2027-03-27T20:00+01:00", "job ends    Mon 2027-03-29 07:55 CEST"),  # spring forward
        ("2027-10-30T20:00+02:00", "job ends    Mon 2027-11-01 07:55 CET"),  # fall back
    ],
)
def test_policy_command_job_end_across_dst(at: str, ends: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--policy", "das5", "--at", at]) == 0
    assert ends in capsys.readouterr().out


def test_unreadable_at_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--policy", "das5", "--at", "tomorrow"]) == 2
    err = capsys.readouterr().err
    assert "batcher policy: --at: cannot read 'tomorrow'" in err and "2026-11-27T20:00+01:00" in err


def test_help_is_plain_text_and_version_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["plot", "--help"], ["status", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "``" not in out and ":func:" not in out, out
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    assert "folder for the PNG files" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("batcher 0.")


def test_status_shows_a_stuck_run_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose segments spend the whole slot on everything but training never finishes:
    status says so instead of crashing in the ETA simulation."""
    config = {"policy": "fixed:10m", "experiments": {"slow": {"script": "train.py", "length": 10}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "runs" / "slow" / load_experiments(config)["slow"].run_id
    write_status(
        run / "status" / "seg-0000.json",
        {
            "experiment": "slow",
            "segment": 0,
            "status": "unfinished",
            "stop_reason": "deadline",
            "epoch": 1,
            "batch": 0,
            "step": 1,
            "steps_this_segment": 1,
            "total": 10,
            "progress": 0.1,
            "started": "2026-11-25T10:00:00+00:00",
            "ended": "2026-11-25T10:10:00+00:00",
            "seconds": {"wall": 600.0, "train": 1.0, "load": 300.0, "save": 299.0},
        },
    )
    assert main(["status", "--config", str(tmp_path / "config.yaml"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["state"] == "stuck" and row["eta"] is None
    assert "Give jobs more time" in row["problem"] and "10m 00s" in row["problem"]
    assert main(["status", "--config", str(tmp_path / "config.yaml")]) == 0
    captured = capsys.readouterr()
    assert "stuck" in captured.out and "slow: stuck:" in captured.err


def test_progress_is_rounded_down_so_100_percent_means_finished() -> None:
    from batcher.workflow.cli import _percent

    assert _percent(39.9 / 40) == "99%" and _percent(1.0) == "100%" and _percent(0.5) == "50%"
    assert _percent(0.29) == "29%"  # 0.29 * 100 is 28.999... in floating point


def test_at_without_an_offset_is_read_in_the_policys_zone_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#27: it was read as UTC silently (an hour off for DAS-5 in winter)."""
    assert main(["policy", "--policy", "das5", "--at", "2026-11-27T19:59"]) == 0
    shown = capsys.readouterr()
    assert "at          Fri 2026-11-27 19:59 CET" in shown.out and "14m 00s" in shown.out
    assert "no UTC offset given, read in the policy's time zone, Europe/Amsterdam" in shown.err
    assert main(["policy", "--policy", "das5", "--at", "2026-11-27T19:59+01:00"]) == 0
    assert "no UTC offset" not in capsys.readouterr().err


def test_at_takes_a_duration_into_the_past(capsys: pytest.CaptureFixture[str]) -> None:
    """#27: `--at -5h` failed in argparse (taken for an option)."""
    assert main(["policy", "--policy", "fixed:5m", "--at", "-5h"]) == 0
    assert "time limit  5m 00s" in capsys.readouterr().out
    assert main(["policy", "--policy", "fixed:5m", "--at", "-soon"]) == 2
    assert "--at: cannot read '-soon'" in capsys.readouterr().err


def _with_timelines(wd: Path) -> None:
    """Give the runs' status files the timeline marks and attempt ids (no Slurm job: no sacct)."""
    for n, path in enumerate(sorted(wd.glob("runs/*/*/status/seg-*.json"))):
        doc = json.loads(path.read_text())
        at = 1_800_000_000.0 + 1000 * doc["segment"]
        doc["timeline"] = {"launched": at, "segment": at + 5, "training": at + 6, "stopping": at + 506,
                           "saved": at + 507, "status": at + 508}  # fmt: skip
        doc["attempt"] = f"pid{n}"
        write_status(path, doc)


def test_timeline_prints_each_attempt_and_draws_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = _workdir(tmp_path)
    _with_timelines(wd)
    assert main(["timeline", "half", "--config", str(wd / "config.yaml")]) == 0
    out = capsys.readouterr().out
    # two 508 s attempts 1000 s apart: 1000 s of training in 1508 s
    assert "half: 2 attempt(s) in 25m 08s, goodput 0.663, largest loss: gap 8m 12s" in out
    assert out.count("deadline") == 2 and "0-20" in out and "20-50" in out
    picture = wd / "results" / "half" / "timeline.png"
    assert picture.read_bytes().startswith(b"\x89PNG") and "done-one" not in out
    assert main(["timeline", "--config", str(wd / "config.yaml"), "--json", "--out", str(wd / "p")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"done-one", "half", "new"} and doc["new"]["attempts"] == []
    (first, second) = doc["half"]["attempts"]
    assert first["seconds"]["imports"] == 5 and first["seconds"]["train"] == 500 and second["gap_s"] is None
    assert first["gap_s"] == 1000 - 508 and doc["half"]["goodput"] == pytest.approx(1000 / 1508)


def test_timeline_of_an_unknown_experiment_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = _workdir(tmp_path)
    assert main(["timeline", "nope", "--config", str(wd / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and "it has: done-one, half, new" in err


def test_status_has_a_goodput_column_and_names_the_largest_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = _workdir(tmp_path)
    _with_timelines(wd)
    assert main(["status", "--config", str(wd / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "goodput" in out and "largest loss" in out and "0.663" in out and "gap 8m 12s" in out
    assert main(["status", "--config", str(wd / "config.yaml"), "--json"]) == 0
    rows = {r["experiment"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["half"]["account"]["largest_loss"] == {"category": "gap", "seconds": 492.0}
    assert rows["new"]["account"]["goodput"] is None


def test_timeline_rows_name_the_nodes_each_slurm_job_got() -> None:
    """An elastic width's jobs run on different numbers of nodes: the attempt column says so."""
    from batcher.workflow.account import CATEGORIES, Attempt, RunAccount
    from batcher.workflow.cli import _timeline_rows

    seconds = dict.fromkeys(CATEGORIES, 1.0)
    attempts = [
        Attempt(0, "41", "deadline", 0.0, 1.0, 9.0, 0, 5, 0, seconds, 60.0, 1.0, nodes=2),
        Attempt(1, "42", "finished", 10.0, 11.0, 19.0, 5, 9, 0, seconds, 60.0, None, nodes=1),
        Attempt(2, "pid7", "finished", 20.0, 20.0, 29.0, 9, 9, 0, seconds),
    ]
    totals = {**dict.fromkeys(CATEGORIES, 3.0), "gap": 1.0}
    rows = _timeline_rows(RunAccount(attempts, totals))
    assert [r[1] for r in rows] == ["41 (2 nodes)", "42 (1 node)", "pid7", ""]
