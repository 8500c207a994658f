"""What a checkpoint holds, versioned."""

from __future__ import annotations

import json

import pytest
import torch

from batcher.ckpt.training_state import FORMAT, Position, TrainingState
from batcher.errors import BatcherError


def test_encode_decode_round_trip_and_per_rank_rng() -> None:
    state = TrainingState(
        objects={"model": {"w": torch.ones(2)}},
        values={"h": torch.zeros(3)},
        pos=Position(epoch=1, batch=2, step=18, tick=19),
        rng_by_rank=["r0", "r1"],
        epoch_rng_by_rank=["e0", "e1"],
        total=5,
        metrics_seq=18,
        done=False,
    )
    doc = state.encode()
    assert doc["format"] == FORMAT and doc["rng"] == "r0"
    back = TrainingState.decode(doc, where="x")
    assert back.pos == state.pos and back.total == 5 and back.metrics_seq == 18
    assert back.rng_of(1) == ("r1", "e1") and back.rng_of(2) == ("r0", "e0")  # more ranks: round robin


def test_format_1_is_still_read_and_others_are_refused() -> None:
    old = {
        "format": 1,
        "objects": {},
        "values": json.dumps({"best": 0.5}),
        "rng": "r",
        "epoch_rng": None,
        "pos": {"epoch": 3, "batch": 0, "step": 3, "tick": 3},
        "metrics_seq": 3,
    }
    back = TrainingState.decode(old, where="old.pt")
    assert back.rng_by_rank == ["r"] and back.values == json.dumps({"best": 0.5})
    with pytest.raises(
        BatcherError, match=r"new\.pt has state format 7, this torch-batcher reads formats 1, 2"
    ):
        TrainingState.decode({**old, "format": 7}, where="new.pt")
