"""Step and save time predictions."""

from __future__ import annotations

from batcher.timing import DurationEstimator, SaveEstimator


def test_high_quantile_ignores_one_slow_outlier_once_there_are_enough_samples() -> None:
    est = DurationEstimator()
    for _ in range(5):
        est.add(1.0)
    est.add(9.0)
    assert est.predict() == 9.0  # few samples: the maximum
    for _ in range(20):
        est.add(1.0)
    assert est.predict() == 1.0


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
