"""What a segment checkpoints of the script: objects split once, values reset on restore."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from batcher.api.objects import TrainingObjects
from batcher.ckpt.training_state import Position, TrainingState


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.n = state["n"]


class Loader(Counter):
    asked = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(3))

    def state_dict(self) -> dict[str, int]:
        Loader.asked += 1
        return super().state_dict()


def test_restore_replaces_the_values_and_the_size_guess_never_asks_a_loader() -> None:
    model, counter, loader = torch.nn.Linear(4, 2), Counter(), Loader()
    objects = TrainingObjects({"model": model, "c": counter, "loader": loader}, {"a": 1})
    assert objects.sharded is None and set(objects.replicated) == {"model", "c", "loader"}
    assert objects.is_loader_given(loader) and not objects.is_loader_given(
        DataLoader(TensorDataset(torch.ones(2)))
    )
    assert objects.size_guess() == (8 + 2) * 4 + 16 and Loader.asked == 0
    objects.values["b"] = "only in the newer checkpoint"
    counter.n = 5
    saved = TrainingState(
        objects=objects.replicated_state(), values=objects.saved_values(), pos=Position(), rng_by_rank=[None]
    )
    objects.restore(TrainingState.decode(saved.encode(), where="x"), where="x")
    assert objects.values == {"a": 1, "b": "only in the newer checkpoint"} and counter.n == 5
    older = TrainingState(objects={"model": model.state_dict(), "c": {"n": 2}, "loader": {"n": 0}},
                          values={"a": 7}, pos=Position(), rng_by_rank=[None])  # fmt: skip
    objects.restore(TrainingState.decode(older.encode(), where="y"), where="y")
    assert objects.values == {"a": 7} and counter.n == 2
