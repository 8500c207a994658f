"""Step and save time predictions."""

from __future__ import annotations

import pytest

from batcher.stopping.timing import DurationEstimator, SaveEstimator


def test_high_quantile_ignores_one_slow_outlier_once_there_are_enough_samples() -> None:
    est = DurationEstimator()
    for _ in range(5):
        est.add(1.0)
    est.add(3.0)
    assert est.predict() == 3.0  # few samples: the maximum
    est.add(9.0)
    est.add(9.0)
    assert est.predict() == 9.0  # two slow ones are a tail, not a transient
    for _ in range(30):
        est.add(1.0)
    assert est.predict() == 1.0  # 38 samples: the 90th percentile


def test_one_transient_outlier_among_few_samples_does_not_set_the_prediction() -> None:
    """A step 10x slower than usual (a loaded machine) with fewer than 10 samples: before, every
    later prediction was its length, and a chain whose slot held the usual step but not this one
    could never start another step (#27)."""
    est = DurationEstimator()
    for seconds in (5.8, 6.0, 5.7):
        est.add(seconds)
    est.add(57.8)
    assert est.predict() == 6.0
    assert est.typical() == pytest.approx(5.9)
    carried = DurationEstimator(history=est.history())  # the same in the next segment
    assert carried.predict() == 6.0
    two = DurationEstimator(history=[5.8, 5.9, 57.8])
    assert two.predict() == 5.9
    few = DurationEstimator(history=[5.8, 57.8])  # too few to tell: the maximum, the median typical
    assert few.predict() == 57.8 and few.typical() == pytest.approx(31.8)


def test_typical_is_the_median_or_the_warm_up() -> None:
    est = DurationEstimator()
    assert est.typical() is None
    est.warm_up(30.0)
    assert est.typical() == 30.0
    est.add(2.0)
    assert est.typical() == 2.0


def test_warm_up_is_the_estimate_only_until_a_normal_step_is_measured() -> None:
    est = DurationEstimator()
    assert est.predict() is None
    est.warm_up(30.0)
    assert est.predict() == 30.0 and est.history() == []
    est.add(1.0)
    assert est.predict() == 1.0
    carried = DurationEstimator(history=est.history())  # the next segment's compile stays out too
    carried.warm_up(30.0)
    assert carried.predict() == 1.0


def test_save_estimate_scales_with_size_and_starts_cautious() -> None:
    est = SaveEstimator()
    assert est.predict(50_000_000) == SaveEstimator.GUESS_FIXED_S + 1.0
    est.add(2.0, 1000)
    assert est.predict(2000) == 1.5 * 4.0 + 0.2
