"""The README's exactness claim as a matrix: every loader kind it names x every kind of stop x
workers 0 and 2, each resumed run equal bit for bit to an uninterrupted one.

Loader kinds (README, "Which data loader, with workers"): a plain ``DataLoader`` over a dataset
that draws no random numbers (persistent workers on and off), and torchdata's
``StatefulDataLoader`` over a dataset that augments with random numbers inside the workers. Stops:
a signal, the deadline (an injected clock jumps past it, so the stop falls on a chosen step on any
machine) and a SIGKILL after a periodic background save. Each chain stops once mid-epoch and once
at an epoch's last batch (12 batches per epoch, 2 epochs). Every segment is a fresh interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import losses, run_segment, same_final_state

WORKERS = ROOT / "tests" / "scripts" / "train_workers.py"

LOADERS = {
    "plain-w0": ["--workers", "0"],
    "plain-w2": ["--workers", "2"],
    "plain-persistent-w2": ["--workers", "2", "--persistent"],
    "stateful-augment-w0": ["--workers", "0", "--stateful", "--augment"],
    "stateful-augment-w2": ["--workers", "2", "--stateful", "--augment"],
}
# each stop kind: the script's arguments, the environment, the steps each segment must end at
STOPS: dict[str, tuple[list[str], dict[str, str], list[int]]] = {
    "signal": (["--stop-at-step", "5", "--stop-at-step", "12"], {}, [5, 12, 24]),
    "deadline": (["--deadline-at-step", "5", "--deadline-at-step", "12"], {}, [5, 12, 24]),
    # killed at step 6 once step 4's checkpoint is committed, at 14 once step 12's is (the
    # epoch's last batch); the resumed segments redo steps 5-6 and 13-14
    "periodic-save-sigkill": (
        ["--kill-at-step", "6:4", "--kill-at-step", "14:12"],
        {"BATCHER_SAVE_EVERY": "4 steps"},
        [-9, -9, 24],
    ),
}

_whole: dict[str, Path] = {}


def _uninterrupted(loader: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if loader not in _whole:
        run = tmp_path_factory.mktemp(f"whole-{loader}")
        done = run_segment(WORKERS, LOADERS[loader], run / "run")
        assert done.returncode == 0, done.stderr[-3000:]
        _whole[loader] = run / "run"
    return _whole[loader]


@pytest.mark.parametrize("stop", list(STOPS))
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, loader: str, stop: str
) -> None:
    args, env, ends = STOPS[stop]
    cut = tmp_path / "run"
    for i, end in enumerate(ends):
        done = run_segment(WORKERS, [*LOADERS[loader], *args], cut, **env)
        if end == -9:  # killed: no status, the next segment resumes from the periodic checkpoint
            assert done.returncode == -9, done.stderr[-3000:]
            assert not (cut / "status" / f"seg-{i:04d}.json").exists()
            continue
        assert done.returncode == 0, done.stderr[-3000:]
        status = json.loads((cut / "status" / f"seg-{i:04d}.json").read_text())
        assert status["step"] == end, (i, status)
        if stop == "deadline" and end < 24:
            assert status["stop_reason"] == "deadline", status
    assert "FINISHED 24" in done.stdout
    whole = _uninterrupted(loader, tmp_path_factory)
    assert losses(whole) == losses(cut)
    same_final_state(whole, cut)
