"""batcher.segment(...): a user object is never mistaken for one of its options."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from conftest import FakeClock
from torch import nn

import batcher
from batcher.errors import BatcherError


class GymLikeEnv:
    """An environment with state, as reinforcement-learning scripts have."""

    def __init__(self) -> None:
        self.t = 0

    def state_dict(self) -> dict[str, int]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.t = state["t"]


def test_a_network_passed_as_policy_is_an_error_that_names_the_way_out(
    tmp_path: Path, clock: FakeClock
) -> None:
    with pytest.raises(BatcherError) as info:
        batcher.segment(
            run_dir=tmp_path, model=nn.Linear(2, 2), policy=nn.Linear(2, 2), clock=clock, out=io.StringIO()
        )
    message = str(info.value)
    assert "batcher.segment(policy=...) got a Linear" in message and "time-limit policy" in message
    assert "objects={'policy': ...}" in message
    with pytest.raises(BatcherError, match=r"batcher\.segment\(env=\.\.\.\) got a GymLikeEnv"):
        batcher.segment(run_dir=tmp_path, env=GymLikeEnv(), clock=clock, out=io.StringIO())  # type: ignore[arg-type]


def test_objects_with_option_names_are_checkpointed(tmp_path: Path, clock: FakeClock) -> None:
    policy, env = nn.Linear(2, 2), GymLikeEnv()
    seg = batcher.segment(
        run_dir=tmp_path, objects={"policy": policy, "env": env}, clock=clock, out=io.StringIO()
    )
    for _ in seg.range(1):
        env.t = 41
    seg.done()
    saved = batcher.load_checkpoint(tmp_path)["objects"]
    assert saved["env"] == {"t": 41} and torch.equal(saved["policy"]["weight"], policy.weight)
    other = GymLikeEnv()
    batcher.segment(
        run_dir=tmp_path, objects={"policy": nn.Linear(2, 2), "env": other}, clock=clock, out=io.StringIO()
    )
    assert other.t == 41


def test_a_name_given_twice_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(BatcherError, match=r"\['model'\] given both as keywords and in objects"):
        batcher.segment(
            run_dir=tmp_path, model=nn.Linear(1, 1), objects={"model": nn.Linear(1, 1)}, clock=clock
        )
