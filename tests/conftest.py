from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_batcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide their own deadlines: drop anything the calling shell (or a Slurm job) set."""
    for key in list(os.environ):
        if key.startswith("BATCHER_") or key in ("SLURM_JOB_ID", "SLURM_JOB_END_TIME"):
            monkeypatch.delenv(key, raising=False)


class FakeClock:
    """A clock tests advance by hand: ``clock()`` is unix seconds."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler in place, as in any interactive run, also when the test runner
    itself started with SIGINT ignored (a background job of a shell without job control)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHER_") and not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


sys.path.insert(0, str(ROOT / "tests"))
