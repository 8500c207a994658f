"""Elastic width: how long a segment waits for all its nodes before it may start on fewer."""

from __future__ import annotations

import pytest

from batcher.errors import ConfigError
from batcher.run.status import SegmentSeconds, SegmentStatus
from batcher.workflow.backfill import needed_s
from batcher.workflow.experiments import Experiment, load_experiments
from batcher.workflow.width import narrow_after_s, parse_narrow_after, remaining_full_width_s


def _exp(nodes: object = "1-2", tasks: int = 1) -> Experiment:
    doc = {"script": "train.py", "length": 3, "resources": {"nodes": nodes, "tasks": tasks}}
    return load_experiments({"experiments": {"e": doc}})["e"]


def _seg(n: int, progress: float, train_s: float, world: int | None) -> SegmentStatus:
    return SegmentStatus(
        status="unfinished", segment=n, progress=progress, world_size=world,
        seconds=SegmentSeconds(train=train_s), step_s_median=1.0,
        timeline={"launched": 0.0, "training": 6.0},
    )  # fmt: skip


def test_without_history_a_segment_waits_the_work_a_narrow_job_would_skip() -> None:
    """No history: the training left is unbounded, so the wait is (1 - f) of the limit; f is the
    narrow width's share of the full one (1 of 2 nodes: half; 1 of 4: a quarter)."""
    assert narrow_after_s(None, _exp("1-2"), 180) == 90
    assert narrow_after_s("auto", _exp("1-4"), 600) == 450
    assert narrow_after_s("auto", _exp("2-4", tasks=2), 600) == 300


def test_the_wait_shrinks_to_what_narrowing_the_last_job_costs() -> None:
    """Half the run done in 100 s of training on 2 ranks: 100 s left at full width, 200 s on one
    node of two. A 3-minute job trains less than that (its limit less the start-up, two steps, the
    save and the margin the history shows): the wait is half of what it trains. A 15-minute job
    would finish the run narrow in 200 s instead of 100 s: the wait is 100 s. With 30 s left, 30 s."""
    history = [_seg(0, 0.5, 100.0, 2)]
    assert remaining_full_width_s(history, 2) == pytest.approx(100.0)
    trains = 180 - needed_s(history)
    assert trains < 200 and narrow_after_s(None, _exp(), 180, history) == round(0.5 * trains)
    assert narrow_after_s(None, _exp(), 900, history) == 100
    nearly = [*history, _seg(1, 0.85, 70.0, 2)]  # 0.85 done in 170 s: 30 s left
    assert remaining_full_width_s(nearly, 2) == pytest.approx(30.0)
    assert narrow_after_s(None, _exp(), 900, nearly) == 30


def test_a_segment_on_fewer_ranks_counts_for_its_share_of_the_full_width() -> None:
    """Segment 1 ran on one rank of two: its 200 s of training are 100 s at full width, so the
    run's rate is 0.6 of the run per 200 s, and 0.4 left is 133 s."""
    history = [_seg(0, 0.2, 40.0, 2), _seg(1, 0.6, 240.0, 1)]
    assert remaining_full_width_s(history, 2) == pytest.approx(0.4 * 160 / 0.6)


def test_history_that_cannot_say_counts_as_unbounded() -> None:
    """Status files written before world_size was kept, or without progress or training."""
    assert remaining_full_width_s([_seg(0, 0.5, 100.0, None)], 2) is None
    assert remaining_full_width_s([_seg(0, 0.0, 0.0, 2)], 2) is None
    assert remaining_full_width_s([], 2) is None


def test_a_setting_overrides_and_a_fixed_width_has_none() -> None:
    assert narrow_after_s("0s", _exp(), 180) == 0
    assert narrow_after_s(0, _exp(), 180) == 0
    assert narrow_after_s("10m", _exp(), 180) == 600
    assert narrow_after_s(45, _exp(), 180) == 45  # a number is seconds, as in save_every
    assert narrow_after_s("auto", _exp(2), 180) is None
    assert narrow_after_s("5m", _exp(1), 180) is None


@pytest.mark.parametrize("bad", ["soon", "5", "-5m", True])
def test_a_bad_narrow_after_says_how_to_write_one(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"narrow_after.*write 'auto'"):
        parse_narrow_after(bad)
