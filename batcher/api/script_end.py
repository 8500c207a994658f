"""The end of a train script: a stopped segment ends the process (:func:`exit_stopped`), and a
loop that ran to its end without ``seg.done()`` is finished for the user at interpreter exit, so
that the workflow does not retrain the segment."""

from __future__ import annotations

import atexit
import gc
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

__all__ = ["SegmentStopped", "at_script_end", "exit_stopped", "finish_forgotten"]

_ADD_DONE = "Add seg.done() after the loop"


class SegmentStopped(SystemExit):
    """Raised to end the process after a clean save: exit status 0 (130 after Ctrl-C, as shells
    expect), the run is unfinished."""


def exit_stopped(reason: str) -> NoReturn:
    """End the process of a segment that stopped for ``reason``, everything durable."""
    # Left to itself the interpreter's last garbage collections walk every object torch made:
    # 1.0-1.7 s after import torch here, in every segment. Objects frozen at exit (after the
    # atexit handlers registered later) are skipped.
    atexit.register(gc.freeze)
    raise SegmentStopped(130 if reason == "signal SIGINT" else 0)


def at_script_end(callback: Callable[[], None]) -> None:
    """Call ``callback`` when the main script has ended.

    ``threading``'s exit hook runs before ``concurrent.futures`` shuts its thread pools (which
    the checkpoint store hashes on); ``atexit`` runs after that, too late to save. The hook holds
    ``callback`` (and its segment), which a script's ``main()`` may long have dropped.
    """
    register = getattr(threading, "_register_atexit", None)
    try:
        (register or atexit.register)(callback)
    except RuntimeError:  # already shutting down (a loop run in an exit hook): no check
        pass


def finish_forgotten(done: Callable[[], None], *, say: Callable[[str], None], can_save: bool) -> None:
    """Call ``done`` for a loop that ran out without ``seg.done()``, and say so; not after a crash
    (the script raised after its loop) or where a save is not possible (``can_save`` False: ranks
    whose process group may be gone), where the segment counts as failed and is retried."""
    forgot = "the training loop ran to its end, but the script never called seg.done()"
    if getattr(sys, "last_value", None) is not None or not can_save:
        say(f"ERROR: {forgot}; the run is not marked finished. {_ADD_DONE}")
        return
    say(f"WARNING: {forgot}; batcher saves the final state and marks the run done. {_ADD_DONE}")
    try:
        done()
    except Exception as exc:  # an exception here would disturb the interpreter's shutdown
        say(f"ERROR: could not finish the run: {type(exc).__name__}: {exc}")
