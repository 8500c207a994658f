"""``save_every``: how it is written, when a save is due."""

from __future__ import annotations

from datetime import timedelta

import pytest

from batcher.ckpt.periodic import DEFAULT_SAVE_EVERY, SaveEvery
from batcher.errors import BatcherError


@pytest.mark.parametrize(
    ("value", "seconds", "steps"),
    [
        ("30m", 1800.0, None),
        ("1h30m", 5400.0, None),
        (timedelta(seconds=90), 90.0, None),
        (500, None, 500),
        ("500 steps", None, 500),
        ("1step", None, 1),
        ("off", None, None),
        ("never", None, None),
        ("500", None, 500),  # the form the error message offers, also from the environment (#27)
        (None, None, None),
    ],
)
def test_reading(value: object, seconds: float | None, steps: int | None) -> None:
    parsed = SaveEvery.parse(value)
    assert (parsed.seconds, parsed.steps) == (seconds, steps)


@pytest.mark.parametrize("bad", ["soon", "-5m", 1.5, -3, True, "5 epochs", 0, "0", "0 steps", "0s"])
def test_bad_values_say_how_to_write_them(bad: object) -> None:
    with pytest.raises(BatcherError, match="save_every") as err:
        SaveEvery.parse(bad)
    assert "30m" in str(err.value) or "duration" in str(err.value)
    assert "'off'" in str(err.value)  # how to turn it off, for a 0 that meant that (#27)


def test_due_by_time_and_by_steps() -> None:
    every = SaveEvery.parse("10m")
    assert not every.due(now=599.0, since=0.0, steps_since=5)
    assert every.due(now=600.0, since=0.0, steps_since=5)
    assert not every.due(now=9999.0, since=0.0, steps_since=0)  # nothing new to save
    steps = SaveEvery.parse(3)
    assert not steps.due(now=0.0, since=0.0, steps_since=2) and steps.due(now=0.0, since=0.0, steps_since=3)
    assert not SaveEvery.parse("off").due(now=1e9, since=0.0, steps_since=10**6)


def test_default_and_str() -> None:
    assert SaveEvery.parse(DEFAULT_SAVE_EVERY).seconds == 1800.0
    assert str(SaveEvery.parse("30m")) == "every 30m 00s" and str(SaveEvery.parse(5)) == "every 5 steps"
    assert str(SaveEvery()) == "off"
