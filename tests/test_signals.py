"""Stop signals only set a flag; the previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from batcher.errors import BatcherError
from batcher.stopping.signals import StopSignals, parse_signals


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


def test_a_segment_never_closed_does_not_keep_ctrl_c_from_the_next(python_ctrl_c: None) -> None:
    """A notebook: a segment's loop died with an exception and its handlers stayed. The next
    segment takes Ctrl-C over, and closing it gives Python's own handler back."""
    import signal

    from batcher.stopping.signals import StopSignals

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    stale = StopSignals([signal.SIGUSR1]).install()  # never restored
    fresh = StopSignals([signal.SIGUSR1]).install()
    try:
        signal.raise_signal(signal.SIGINT)
        assert fresh.received == "SIGINT" and stale.received is None
    finally:
        fresh.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
