"""FSDP shards: a checkpoint and a script that disagree about sharding are told apart
(saving and loading shards across ranks run in tests/test_ranks.py)."""

from __future__ import annotations

import pytest

from batcher.ckpt.sharded import ShardedState, load_sharded
from batcher.errors import CheckpointMismatchError


def test_a_sharded_checkpoint_needs_an_fsdp_script_and_the_other_way_round() -> None:
    with pytest.raises(
        CheckpointMismatchError, match="written with sharded \\(FSDP\\) state but this script has no FSDP"
    ):
        load_sharded(None, "/runs/x/ckpt/step-000000004.dcp", where="step-000000004.dcp")
    fsdp = ShardedState.__new__(ShardedState)  # stands for a script that passes an FSDP model
    with pytest.raises(
        CheckpointMismatchError, match="written without FSDP but this script passes an FSDP model"
    ):
        load_sharded(fsdp, None, where="step-000000004.pt")
    load_sharded(None, None, where="step-000000004.pt")  # neither: nothing to do
