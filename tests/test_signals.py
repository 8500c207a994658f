"""Stop signals only set a flag; the previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from batcher.errors import BatcherError
from batcher.signals import StopSignals, parse_signals


def test_names_in_every_spelling() -> None:
    assert parse_signals("TERM,usr1 SIGURG") == (signal.SIGTERM, signal.SIGUSR1, signal.SIGURG)
    with pytest.raises(BatcherError, match="unknown signal 'NOPE'"):
        parse_signals("NOPE")


def test_a_signal_sets_the_flag_and_the_old_handler_returns() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    stops = StopSignals([signal.SIGUSR1]).install()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert stops.received == "SIGUSR1"
    stops.restore()
    assert signal.getsignal(signal.SIGUSR1) == before
