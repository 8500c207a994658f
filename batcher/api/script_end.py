"""The end of a train script: a loop that ran to its end without ``seg.done()`` is finished for
the user at interpreter exit, so that the workflow does not retrain the segment."""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Callable

__all__ = ["at_script_end", "finish_forgotten"]

_ADD_DONE = "Add seg.done() after the loop"


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
