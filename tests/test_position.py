"""The loop position and a plain loader's mid-epoch replay."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from batcher.position import EpochReplay, Position, fast_forward


def test_position_round_trips() -> None:
    pos = Position(epoch=2, batch=3, step=35, tick=37)
    assert Position.from_dict(pos.as_dict()) == pos


def test_replayed_epoch_skips_to_the_same_batches_without_loading_them() -> None:
    data = TensorDataset(torch.arange(40.0))
    loaded: list[int] = []

    class Counting(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> torch.Tensor:
            loaded.append(i)
            return data[i][0]

    torch.manual_seed(0)
    replay = EpochReplay()
    replay.begin(0)
    whole = [b.tolist() for b in DataLoader(Counting(), batch_size=4, shuffle=True)]
    saved_rng = replay.epoch_rng
    torch.manual_seed(123)  # the resumed process is elsewhere in its random streams
    resumed = EpochReplay()
    resumed.resume_from(saved_rng)
    loader = DataLoader(Counting(), batch_size=4, shuffle=True)
    current = resumed.begin(6)
    loaded.clear()
    it = iter(loader)
    fast_forward(loader, it, 6)
    assert current is not None
    assert [b.tolist() for b in it] == whole[6:]
    assert len(loaded) == 16  # only the 4 remaining batches were fetched
