"""The loop position and a plain loader's mid-epoch replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT
from helpers import losses, run_segment, same_final_state
from torch.utils.data import DataLoader, TensorDataset

from batcher.api.replay import EpochReplay, resume_notice
from batcher.ckpt.training_state import Position


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
    loaded.clear()
    it = resumed.batches(loader, 6, self_resuming=False)
    assert [b.tolist() for b in it] == whole[6:]
    assert len(loaded) == 16  # only the 4 remaining batches were fetched


def test_notices_say_when_a_resume_may_not_be_exact_or_had_to_replay() -> None:
    class Stream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(10))

    class Resumable:
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(10))

        def state_dict(self) -> dict:  # type: ignore[type-arg]
            return {}

        def load_state_dict(self, state: dict) -> None:  # type: ignore[type-arg]
            pass

    plain = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=2)
    assert resume_notice(plain, 0, 0.0, self_resuming=False) is None  # a fresh epoch
    assert resume_notice(plain, 3, 0.0, self_resuming=False) is None  # indices only, exact
    stream = resume_notice(DataLoader(Stream(), batch_size=2), 3, 2.5, self_resuming=False)
    assert stream is not None and "replaying 3 batches of an IterableDataset (2.5s" in stream
    forgotten = resume_notice(Resumable(), 3, 0.1, self_resuming=False)
    assert forgotten is not None and "batcher.segment(..., loader=...)" in forgotten
    assert resume_notice(Resumable(), 3, 0.1, self_resuming=True) is None
    assert resume_notice(range(10), 3, 0.0, self_resuming=False) is None  # cheap to replay
    slow = resume_notice(range(10), 3, 1.5, self_resuming=False)
    assert slow is not None and "1.5s" in slow


# With workers, in a fresh interpreter (workers are forked; never from the pytest process).
WORKERS = ROOT / "tests" / "scripts" / "train_workers.py"


def _segments_until_done(run: Path, args: list[str], logs: Path) -> list[str]:
    out = []
    for i in range(6):
        done = run_segment(WORKERS, args, run, TEST_FETCH_LOG=str(logs / f"fetched-{i}"))
        assert done.returncode == 0, done.stderr[-3000:]
        out.append(done.stderr)
        if "FINISHED" in done.stdout:
            return out
    raise AssertionError("not finished after 6 segments")


@pytest.mark.parametrize(
    ("flags", "stops"),
    [(["--persistent"], [5, 12, 17]), ([], [17]), (["--stateful", "--augment", "--persistent"], [5, 17])],
    ids=["plain-persistent-workers", "plain-workers", "stateful-random-augmentation"],
)
def test_resumes_with_workers_load_only_the_remaining_batches_and_are_exact(
    tmp_path: Path, flags: list[str], stops: list[int]
) -> None:
    """Two workers (12 batches per epoch), stopped mid-epoch (steps 5, 17) or at an epoch's last
    batch (12), and resumed: the workers of the resume at step 17 fetch the 7 batches left in
    epoch 1, not the 5 before them, and the run equals an uninterrupted one bit for bit: a plain
    DataLoader when the dataset draws no random numbers, torchdata's StatefulDataLoader when it
    augments with random numbers inside the workers."""
    whole = run_segment(WORKERS, flags, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    logs = tmp_path / "logs"
    logs.mkdir()
    stop_args = [a for n in stops for a in ("--stop-at-step", str(n))]
    stderr = _segments_until_done(tmp_path / "cut", [*flags, *stop_args], logs)
    assert len(stderr) == len(stops) + 1
    assert len((logs / f"fetched-{len(stops)}").read_text().split()) == 7 * 16
    if "--stateful" not in flags:
        assert "NOTE: resumed mid-epoch: the DataLoader's workers start at batch 5" in stderr[-1]
    same_final_state(tmp_path / "whole", tmp_path / "cut")
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")
