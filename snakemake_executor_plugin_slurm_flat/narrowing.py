"""Jobs of a node range that wait for their full width first, then may start narrower.

A job with the resources ``node_range`` (``"1-2"``) and ``narrow_after_s`` (seconds, > 0) is
submitted for the range's largest count of nodes. Once it has waited ``narrow_after_s`` and is
still pending, ``scontrol update JobId=<id> NumNodes=MIN-MAX`` lets Slurm start it on as many
nodes of the range as are free. Slurm refuses that change for a job that has started ("Job is no
longer pending execution"), so a job that started meanwhile keeps its nodes. A job whose wait is
0 is submitted with the range at once (:func:`with_node_range` in the package).

The wait of a pre-submitted successor counts from when a job takes it over (its predecessor has
ended: before that, its dependency held it, not the nodes).

Only a user's change keeps "as many nodes as are free": Slurm marks a node count that root (an
operator) changes as an admin-set limit, and then asks for the range's minimum
(``select_nodes``: ``req_nodes = min_nodes`` when ``limit_set.tres[node]`` is set). Measured on the
test cluster: the same narrowed job, both nodes free, starts on both when its user narrowed it
and on one when root did. The executor warns when it runs as root.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Narrowed", "Narrowing", "full_width"]

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Narrowed:
    """A job that may now start on ``span`` nodes after it waited ``waited_s``."""

    job_id: str
    span: str
    waited_s: float


def full_width(span: str) -> str:
    """``MAX-MAX`` for a range ``MIN-MAX``: the request a job starts with."""
    _, _, most = span.partition("-")
    return f"{most}-{most}"


class Narrowing:
    """The watched jobs: each with its range and the moment it may start narrower."""

    def __init__(self, *, run: Runner = subprocess.run, clock: Callable[[], float] = time.monotonic) -> None:
        self._run, self._clock = run, clock
        self._watched: dict[str, tuple[str, float, float]] = {}  # id -> (span, since, due)

    def watch(self, job_id: str, span: str, after_s: float) -> None:
        """Let job ``job_id`` start on ``span`` nodes once it has waited ``after_s`` from now."""
        now = self._clock()
        self._watched[job_id] = (span, now, now + after_s)

    def narrow_due(self) -> list[Narrowed]:
        """Widen the range of every watched job whose wait is over and that is still pending;
        return those Slurm accepted the change for. Each job is tried once: one that Slurm refuses
        (it started, or ended) is forgotten."""
        now, done = self._clock(), []
        for job_id, (span, since, due) in list(self._watched.items()):
            if now < due:
                continue
            del self._watched[job_id]
            out = self._run(
                ["scontrol", "update", f"JobId={job_id}", f"NumNodes={span}"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if out.returncode == 0:
                done.append(Narrowed(job_id, span, now - since))
        return done

    @property
    def watched(self) -> list[str]:
        return list(self._watched)
