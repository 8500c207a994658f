"""Stop requests by signal: the handler only records the signal; the loop saves at a step boundary.

Saving inside a signal handler can interleave with a half-finished optimizer step or a
half-written file (Lightning's SLURM connector, issue #21406); a flag cannot.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any

__all__ = ["DEFAULT_STOP_SIGNALS", "StopSignals", "parse_signals"]

DEFAULT_STOP_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGUSR1", "SIGURG")


def parse_signals(names: Iterable[str | int | signal.Signals] | str) -> tuple[signal.Signals, ...]:
    """Return the signals named, e.g. ``parse_signals("TERM,USR1")``; unknown names raise ValueError."""
    from batcher.errors import BatcherError

    if isinstance(names, str):
        names = [n for n in names.replace(" ", ",").split(",") if n]
    out = []
    for name in names:
        if isinstance(name, int):
            out.append(signal.Signals(name))
            continue
        key = str(name).upper()
        key = key if key.startswith("SIG") else "SIG" + key
        try:
            out.append(signal.Signals[key])
        except KeyError:
            raise BatcherError(f"unknown signal {name!r}; use names such as SIGTERM, USR1 or URG") from None
    return tuple(out)


def _beneath(handler: Any, sig: signal.Signals) -> Any:
    """The handler to put back later in place of ``handler``: a segment that was never closed (an
    exception in a notebook) left its own, so the one it replaced."""
    owner = getattr(handler, "__self__", None)
    if isinstance(owner, StopSignals):
        return owner._previous.get(
            sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        )
    return handler


class StopSignals:
    """Install handlers that set a flag; ``received`` names the first signal, or is None.

    Ctrl-C (SIGINT) is one of them while Python's own handler is in place: the first asks for a
    save at the next step boundary and an exit, a second one raises ``KeyboardInterrupt`` at once
    (a save being written then is discarded; the previous checkpoint stays good).
    """

    def __init__(self, signals: Iterable[signal.Signals], *, interrupt: bool = True) -> None:
        self._signals = tuple(signals)
        self._interrupt = interrupt
        self._previous: dict[signal.Signals, Any] = {}
        self.received: str | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if signum == signal.SIGINT and self.received is None:  # os.write: safe inside a handler
            os.write(
                2,
                b"[batcher] Ctrl-C: saving at the end of this step, then exiting (Ctrl-C again: stop now)\n",
            )
        if self.received is None:
            self.received = signal.Signals(signum).name

    def install(self) -> StopSignals:
        """Install the handlers (main thread only; elsewhere this is a no-op) and return self."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self._signals:
            if sig not in self._previous:
                self._previous[sig] = _beneath(signal.signal(sig, self._handle), sig)
        current = signal.getsignal(signal.SIGINT)
        if (
            self._interrupt
            and signal.SIGINT not in self._previous
            # Python's own (not the script's), or that of a segment never closed (a notebook)
            and (
                current is signal.default_int_handler
                or isinstance(getattr(current, "__self__", None), StopSignals)
            )
        ):
            self._previous[signal.SIGINT] = _beneath(
                signal.signal(signal.SIGINT, self._handle), signal.SIGINT
            )
        return self

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
