"""--time-min: the shortest limit Slurm's backfill may start a segment with, never below what
the run's history says one job needs."""

from __future__ import annotations

import pytest

from batcher.errors import ConfigError
from batcher.run.status import SegmentSeconds, SegmentStatus
from batcher.workflow.backfill import needed_s, time_min_minutes
from batcher.workflow.experiments import Experiment, load_experiments
from batcher.workflow.launch import slurm_extra


def _exp() -> Experiment:
    return load_experiments({"experiments": {"e": {"script": "train.py", "length": 3}}})["e"]


def _history(**timeline: float) -> SegmentStatus:
    return SegmentStatus(
        status="unfinished", step_s_median=20.0, seconds=SegmentSeconds(save=12.0, stalls=2.0),
        timeline={"launched": 100.0, "segment": 104.0, "training": 105.0, **timeline},
    )  # fmt: skip


def test_min_time_lets_backfill_start_a_segment_with_a_shorter_limit() -> None:
    settings = {"stop_signal": "URG@60", "min_time": "5m"}
    assert slurm_extra(_exp(), settings, 14) == "--signal=URG@60 --time-min=5"
    assert slurm_extra(_exp(), {**settings, "min_time": "90s"}, 14) == "--signal=URG@60 --time-min=2"
    # not below what a job needs: 5 s start-up, two 20 s steps, a 10 s final save, the 15 s margin
    assert needed_s([_history()]) == 5 + 40 + 10 + 15
    assert time_min_minutes("30s", 14, [_history()]) == 2
    # no minimum when it is not below the limit, or unset, or off
    assert slurm_extra(_exp(), {**settings, "min_time": "14m"}, 14) == "--signal=URG@60"
    assert slurm_extra(_exp(), {"stop_signal": "URG@60"}, 14) == "--signal=URG@60"
    assert time_min_minutes("off", 14) is None and needed_s([]) == 0


@pytest.mark.parametrize("bad", ["5", "soon", "-5m", "0s"])
def test_a_bad_min_time_says_how_to_write_one(bad: str) -> None:
    with pytest.raises(ConfigError, match="min_time") as info:
        time_min_minutes(bad, 14)
    assert "'5m'" in str(info.value)
