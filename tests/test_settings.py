"""A segment's settings: arguments, then BATCHER_* variables, then defaults."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from batcher.api.settings import DEFAULT_KEEP, read_settings
from batcher.errors import BatcherError
from batcher.run.status import write_status


def test_defaults_and_the_run_folder_named_after_the_script() -> None:
    s = read_settings({}, argv=["/x/train_mnist.py", "--lr", "1"])
    assert s.by_hand and s.run.root == Path("runs/train_mnist")
    assert (s.margin_s, s.keep) == (None, DEFAULT_KEEP)  # None: learned (batcher.stopping.margin)
    assert s.signals == (signal.SIGTERM, signal.SIGUSR1, signal.SIGURG)
    assert s.segment == 0 and s.status_file == Path("runs/train_mnist/status/seg-0000.json")


def test_the_workflow_environment(tmp_path: Path) -> None:
    env = {
        "BATCHER_RUN_DIR": str(tmp_path / "run"),
        "BATCHER_MARGIN_S": "5",
        "BATCHER_KEEP": "3",
        "BATCHER_SIGNALS": "USR1",
        "BATCHER_SEGMENT": "4",
        "BATCHER_EXPERIMENT": "exp",
        "BATCHER_STATUS_FILE": str(tmp_path / "s.json"),
    }
    s = read_settings(env)
    assert not s.by_hand and s.run.root == tmp_path / "run" and s.experiment == "exp"
    assert (s.margin_s, s.keep, s.signals, s.segment) == (5.0, 3, (signal.SIGUSR1,), 4)
    assert s.status_file == tmp_path / "s.json"
    assert read_settings(env, margin_s=1.0, keep=1).margin_s == 1.0  # arguments win


def test_the_segment_number_counts_the_status_files(tmp_path: Path) -> None:
    for n in range(3):
        write_status(tmp_path / "status" / f"seg-{n:04d}.json", {"status": "unfinished"})
    assert read_settings({}, run_dir=tmp_path).segment == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BATCHER_MARGIN_S": "soon"},
            "BATCHER_MARGIN_S='soon' is not a number; write e.g. BATCHER_MARGIN_S=15",
        ),
        ({"BATCHER_KEEP": "-1"}, "BATCHER_KEEP='-1' must not be negative"),
        ({"BATCHER_SEGMENT": "x"}, "BATCHER_SEGMENT='x' is not an integer"),
        ({"BATCHER_SIGNALS": "SIGNOPE"}, "unknown signal 'SIGNOPE'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(BatcherError) as info:
        read_settings({"BATCHER_RUN_DIR": "/nonexistent/run", **env})
    assert message in str(info.value)


def test_save_every_from_the_environment_takes_a_bare_number_of_steps_and_refuses_zero(
    tmp_path: Path,
) -> None:
    """#27: BATCHER_SAVE_EVERY=500, the form its own error offered, was refused, and =0 turned
    periodic saves off without a word."""
    assert read_settings({"BATCHER_SAVE_EVERY": "500"}, run_dir=tmp_path).save_every.steps == 500
    with pytest.raises(BatcherError, match=r"BATCHER_SAVE_EVERY=0 .*'off'"):
        read_settings({"BATCHER_SAVE_EVERY": "0"}, run_dir=tmp_path)


def test_a_negative_margin_is_refused_as_an_argument_too(tmp_path: Path) -> None:
    with pytest.raises(BatcherError, match=r"margin_s=-5\): the margin must be 0 or more"):
        read_settings({}, run_dir=tmp_path, margin_s=-5)
    with pytest.raises(BatcherError, match="BATCHER_MARGIN_S='-5' must not be negative"):
        read_settings({"BATCHER_MARGIN_S": "-5"}, run_dir=tmp_path)


def test_a_segment_started_by_hand_after_a_kill_counts_the_killed_ones(tmp_path: Path) -> None:
    """#27: a segment killed after a periodic save wrote no status; the next one started by hand
    called itself segment 0 again (every metrics row said "segment": 0)."""
    from batcher.ckpt.manifest import CheckpointInfo, write_manifest

    assert read_settings({}, run_dir=tmp_path).segment == 0
    (tmp_path / "ckpt").mkdir()
    write_manifest(tmp_path / "ckpt", [CheckpointInfo("step-000000004.pt", 4, 1, "d", 1, 0.0)], keep_note="")
    assert read_settings({}, run_dir=tmp_path).segment == 2
    assert read_settings({"BATCHER_SEGMENT": "7"}, run_dir=tmp_path).segment == 7  # the workflow's
