"""The command line a run started by hand was started with: a changed one is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import python_env

from batcher.errors import BatcherError
from batcher.run.command import FILE, check_command


def test_first_segment_records_and_the_same_command_resumes(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "train"
    check_command(run, ["/x/train.py", "--lr", "0.1"], {})
    assert (run / FILE).is_file()
    check_command(run, ["./train.py", "--lr", "0.1"], {})  # the script's folder does not matter


def test_changed_arguments_are_refused_with_the_ways_out(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "train"
    check_command(run, ["train.py", "--lr", "0.1"], {})
    with pytest.raises(BatcherError) as info:
        check_command(run, ["train.py", "--lr", "0.01"], {})
    message = str(info.value)
    assert "`train.py --lr 0.1`, but this is `train.py --lr 0.01`" in message
    assert "BATCHER_RUN_DIR" in message and "BATCHER_ALLOW_CHANGED_ARGS=1" in message


def test_allowed_change_is_recorded(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "train"
    check_command(run, ["train.py", "--epochs", "10"], {})
    check_command(run, ["train.py", "--epochs", "20"], {"BATCHER_ALLOW_CHANGED_ARGS": "1"})
    check_command(run, ["train.py", "--epochs", "20"], {})  # the new command line is the record now


def test_runs_from_before_the_record_and_other_ranks_do_not_write(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "ckpt").mkdir(parents=True)
    check_command(old, ["train.py"], {})
    assert not (old / FILE).exists()
    fresh = tmp_path / "fresh"
    check_command(fresh, ["train.py"], {"RANK": "1"})
    assert not (fresh / FILE).exists()


@pytest.mark.parametrize("run_dir", [None, "elsewhere/myrun"], ids=["default-folder", "BATCHER_RUN_DIR"])
def test_a_script_started_by_hand_with_other_arguments_is_refused(
    tmp_path: Path, run_dir: str | None
) -> None:
    """Also in a folder named by BATCHER_RUN_DIR (#27); only the workflow, which names each run
    folder by the script's arguments, is not checked."""
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, torch, batcher\n"
        "model = torch.nn.Linear(2, 1)\n"
        "seg = batcher.segment(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=float(sys.argv[1])))\n"
        "for _ in seg.range(1):\n    pass\n"
        "seg.done()\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(script), *args]
        env = python_env(**({"BATCHER_RUN_DIR": run_dir} if run_dir else {}))
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert run("0.1").returncode == 0
    assert run("0.1").returncode == 0  # the same command resumes (here: nothing left to do)
    changed = run("0.01")
    folder = run_dir or "runs/train"
    assert changed.returncode != 0 and f"{folder} holds a run started as `train.py 0.1`" in changed.stderr
