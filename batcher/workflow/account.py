"""Where every second of a chain went: the time account of one run, per attempt and in total.

The one owner of the account: ``batcher timeline``, ``batcher status``'s goodput column, the
workflow's ``timeline.png`` and ``benchmarks/slurm_chain.py`` all call :func:`account_run`.

Each attempt at a segment (a Slurm job, or a process under ``profiles/local``) is split into
categories that follow each other in time, so that they sum to the attempt's wall time, from
its submission to its end:

    queued      submit -> job start (Slurm's accounting; 0 without a scheduler)
    launch      job start -> the job's shell starts Python (``launched``)
    imports     Python -> ``batcher.segment()`` (interpreter, ``import torch``, the script's start)
    restore     ``batcher.segment()`` -> training (lock, checkpoint load)
    train       training steps whose result was kept
    stalls      training held by periodic and ``seg.save()`` saves
    lost        training after the last committed checkpoint of an attempt that died unplanned
                (SIGKILL, OOM, node failure): trained again by the next attempt
    final_save  the stop's save and the status file
    drain       status file -> job end (exit, teardown)

Between two attempts, ``gap`` is one's end to the next one's submission (a pre-submitted one,
held by its dependency, counts as submitted at that end). The run's goodput is
its kept training (``train``, lost work already taken out) over first submission -> last end.

Sources: the status files and, for an attempt without one, its heartbeat
(:mod:`batcher.run.heartbeat`: how far it got, its last committed checkpoint) for the marks;
``sacct`` for submit, start and end when the attempt's id is a Slurm job; else the marks
themselves (no queue: submit = start = ``launched``). An attempt that died before Python
wrote its first heartbeat is not seen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from batcher.run.heartbeat import Heartbeat, read_heartbeat
from batcher.run.layout import RunLayout
from batcher.run.lock import is_locked
from batcher.run.status import SegmentStatus, read_status

__all__ = [
    "CATEGORIES",
    "LOSSES",
    "Attempt",
    "RunAccount",
    "SchedulerJob",
    "account_run",
    "sacct_jobs",
]

CATEGORIES = (
    "queued", "launch", "imports", "restore", "train", "stalls", "lost", "final_save", "drain",
)  # fmt: skip
#: what is not kept training, gaps between attempts included
LOSSES = (*(c for c in CATEGORIES if c != "train"), "gap")


@dataclass(frozen=True)
class SchedulerJob:
    """What the scheduler's accounting says of one job (unix seconds; None: not yet or unknown)."""

    job: str
    state: str
    submit: float | None
    start: float | None
    end: float | None
    limit_s: float | None = None
    nodes: int | None = None  # allocated (requested, while pending)


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # Unknown, None
        return None


def _limit_s(text: str) -> float | None:
    """sacct's Timelimit ([D-]HH:MM:SS, MM:SS) in seconds; None for UNLIMITED or Partition_Limit."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(x) for x in clock.split(":")]
        while len(parts) < 3:
            parts.insert(0, 0)
        return float((int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2])
    except ValueError:
        return None


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def sacct_jobs(ids: Iterable[str], *, run: Runner = subprocess.run) -> dict[str, SchedulerJob]:
    """The accounting of the Slurm jobs ``ids`` (``sacct``, times as unix seconds); empty when
    there is no ``sacct`` or it fails (a cluster without accounting: the account uses the marks)."""
    ids = sorted({i for i in ids if i.isdigit()})
    if not ids or (run is subprocess.run and shutil.which("sacct") is None):
        return {}
    argv = [
        "sacct",
        "-n",
        "-X",
        "-P",
        "-o",
        "JobID,State,Submit,Start,End,Timelimit,NNodes",
        "-j",
        ",".join(ids),
    ]
    try:
        out = run(
            argv, capture_output=True, text=True, timeout=20, env={**os.environ, "SLURM_TIME_FORMAT": "%s"}
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    jobs = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 7:
            continue
        job, state, submit, start, end, limit, nodes = parts
        state = state.split()[0] if state else state  # "CANCELLED by 0"
        jobs[job] = SchedulerJob(
            job, state, _seconds(submit), _seconds(start), _seconds(end), _limit_s(limit),
            int(nodes) if nodes.isdigit() else None,
        )  # fmt: skip
    return jobs


@dataclass(frozen=True)
class Attempt:
    """One attempt at a segment. ``outcome``: the status file's stop reason (``finished`` for the
    run's end), ``died`` (no status file: killed, crashed, timed out) or ``running``.
    ``seconds`` has every category of :data:`CATEGORIES`; ``gap_s`` is this attempt's end to the
    next one's submission (None for the last)."""

    segment: int
    attempt: str
    outcome: str
    submit: float
    start: float
    end: float
    start_step: int
    end_step: int
    lost_steps: int
    seconds: dict[str, float]
    limit_s: float | None = None
    gap_s: float | None = None
    nodes: int | None = None  # the nodes Slurm gave the job (an elastic width varies)

    @property
    def wall(self) -> float:
        return self.end - self.submit

    @property
    def unplanned(self) -> bool:
        return self.outcome == "died"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "wall": self.wall}


@dataclass(frozen=True)
class RunAccount:
    """The account of one run: its attempts in time order and their sums."""

    attempts: list[Attempt]
    totals: dict[str, float] = field(default_factory=dict)  # CATEGORIES and "gap"

    @property
    def span_s(self) -> float:
        """First submission -> last end."""
        return self.attempts[-1].end - self.attempts[0].submit if self.attempts else 0.0

    @property
    def goodput(self) -> float | None:
        """Kept training over the span; None before anything ran."""
        return self.totals["train"] / self.span_s if self.span_s > 0 else None

    @property
    def largest_loss(self) -> tuple[str, float] | None:
        """The category, gaps included, where most of the time that was not training went."""
        losses = [(self.totals[c], c) for c in LOSSES if self.totals.get(c, 0.0) > 0]
        if not losses:
            return None
        seconds, name = max(losses)
        return name, seconds

    def as_dict(self) -> dict[str, Any]:
        loss = self.largest_loss
        return {
            "span_s": self.span_s,
            "goodput": self.goodput,
            "totals": self.totals,
            "largest_loss": None if loss is None else {"category": loss[0], "seconds": loss[1]},
            "attempts": [a.as_dict() for a in self.attempts],
        }


def account_run(
    run: RunLayout,
    *,
    jobs: Callable[[Iterable[str]], Mapping[str, SchedulerJob]] = sacct_jobs,
    now: float | None = None,
) -> RunAccount:
    """The time account of the run in ``run`` (``jobs``: the scheduler's accounting of job ids;
    ``now``: the time a running attempt is counted up to, default the clock)."""
    now = time.time() if now is None else now
    statuses = [s for s in (read_status(p) for p in run.statuses()) if s is not None]
    beats = [b for b in (read_heartbeat(p) for p in run.heartbeats()) if b is not None]
    with_status = {(s.segment, s.attempt) for s in statuses}
    dead = [b for b in beats if (b.segment, b.attempt) not in with_status]
    accounting = jobs([*(s.attempt for s in statuses), *(b.attempt for b in dead)])
    pieces: list[tuple[float, SegmentStatus | Heartbeat]] = [
        *((_first_mark(_status_marks(s)), s) for s in statuses),
        *((_first_mark(b.timeline, b.time), b) for b in dead),
    ]
    pieces.sort(key=lambda p: p[0])
    locked = run.lock.exists() and is_locked(run.lock)
    attempts: list[Attempt] = []
    for i, (_, piece) in enumerate(pieces):
        job = accounting.get(piece.attempt)
        if isinstance(piece, SegmentStatus):
            attempts.append(_finished(piece, job))
        else:
            resumed = _start_step(pieces[i + 1][1]) if i + 1 < len(pieces) else None
            last = i + 1 == len(pieces)
            running = job.state in ("RUNNING", "PENDING") if job else last and locked
            attempts.append(_unfinished(piece, job, resumed=resumed, running=running, now=now))
    for i in range(1, len(attempts)):
        attempts[i] = _held_until(attempts[i], attempts[i - 1].end)
    attempts = [
        _with_gap(a, attempts[i + 1].submit if i + 1 < len(attempts) else None)
        for i, a in enumerate(attempts)
    ]
    totals = {c: sum(a.seconds[c] for a in attempts) for c in CATEGORIES}
    totals["gap"] = sum(max(0.0, a.gap_s) for a in attempts if a.gap_s is not None)
    return RunAccount(attempts, totals)


def _first_mark(timeline: Mapping[str, float], default: float = 0.0) -> float:
    return min(timeline.values(), default=default)


def _start_step(piece: SegmentStatus | Heartbeat) -> int:
    """The step an attempt began at: the checkpoint it resumed from."""
    if isinstance(piece, SegmentStatus):
        return piece.step - piece.steps_this_segment
    return piece.first_step


def _held_until(a: Attempt, previous_end: float) -> Attempt:
    """An attempt submitted before the previous one ended (a pre-submitted successor, held by its
    dependency) counts as submitted when that one ended: its queue is what it waited after."""
    if a.submit >= previous_end:
        return a
    submit = min(previous_end, a.start)
    seconds = {**a.seconds, "queued": a.start - submit}
    return Attempt(**{**asdict(a), "submit": submit, "seconds": seconds})


def _with_gap(a: Attempt, next_submit: float | None) -> Attempt:
    if next_submit is None:
        return a
    return Attempt(**{**asdict(a), "gap_s": next_submit - a.end})


def _when(job: SchedulerJob | None, marks: Mapping[str, float], end: float) -> tuple[float, float, float]:
    """Submit, start and end: the scheduler's, else (no queue) the first mark and ``end``.
    sacct's whole seconds are moved to what the marks prove (Python ran after the start and
    before the end)."""
    first = _first_mark(marks, end)
    start = job.start if job and job.start is not None else first
    start = min(start, first)
    submit = min(job.submit if job and job.submit is not None else start, start)
    end = max(job.end if job and job.end is not None else end, end)
    return submit, start, end


def _marks(marks: Mapping[str, float], start: float, until: float) -> tuple[float, float, float]:
    """``launched``, ``segment`` and ``training``, each at least the one before (a missing
    one is the one before: the attempt died before it)."""
    launched = max(marks.get("launched", start), start)
    segment = max(marks.get("segment", until), launched)
    training = max(marks.get("training", until), segment)
    return launched, min(segment, until), min(training, until)


def _status_marks(s: SegmentStatus) -> dict[str, float]:
    """The status file's timeline; one written before it had one gets its ``started`` and
    ``ended`` times, the load seconds as the restore."""
    marks = dict(s.timeline)
    try:
        started = datetime.fromisoformat(s.started).timestamp() if s.started else None
        ended = datetime.fromisoformat(s.ended).timestamp() if s.ended else None
    except ValueError:
        started = ended = None
    if started is not None and "segment" not in marks:
        marks.setdefault("segment", started)
        marks.setdefault("training", started + s.seconds.load)
    if ended is not None:
        marks.setdefault("status", ended)
    return marks


def _finished(s: SegmentStatus, job: SchedulerJob | None) -> Attempt:
    t = _status_marks(s)
    status = t.get("status", t.get("training", 0.0))
    submit, start, end = _when(job, t, status)
    launched, segment, training = _marks(t, start, status)
    stalls = min(s.seconds.stalls, max(0.0, status - training))
    # an older status file has no "stopping" mark: its final save is what the saves held beyond the stalls
    stopping = t.get("stopping", status - max(0.0, s.seconds.save - s.seconds.stalls))
    stopping = min(max(stopping, training + stalls), status)
    seconds = {
        "queued": start - submit,
        "launch": launched - start,
        "imports": segment - launched,
        "restore": training - segment,
        "train": stopping - training - stalls,
        "stalls": stalls,
        "lost": 0.0,
        "final_save": status - stopping,
        "drain": end - status,
    }
    outcome = "finished" if s.status == "done" else s.stop_reason or "stopped"
    return Attempt(
        s.segment, s.attempt, outcome, submit, start, end, s.step - s.steps_this_segment, s.step, 0, seconds,
        job.limit_s if job else None, nodes=job.nodes if job else None,
    )  # fmt: skip


def _unfinished(
    b: Heartbeat, job: SchedulerJob | None, *, resumed: int | None, running: bool, now: float
) -> Attempt:
    """An attempt without a status file: running, or dead after its last heartbeat."""
    t = b.timeline
    last = max(b.time, now) if running else b.time
    submit, start, end = _when(job, t, last)
    if running:
        end = max(end, last)
    launched, segment, training = _marks(t, start, b.time)
    stalls = min(b.held_s, max(0.0, end - training))
    lost, lost_steps = 0.0, 0
    if not running:
        resumed = b.committed_step if resumed is None else resumed
        lost_steps = max(0, b.step - resumed)
        if resumed <= b.committed_step:  # the next attempt began where this one's last commit was
            after = max(b.committed_at, training)
            lost = end - after - max(0.0, b.held_s - b.held_at_commit)
        else:  # a commit after the last heartbeat: lost is what followed the last sign of life
            lost = end - b.time
        lost = min(max(0.0, lost), max(0.0, end - training - stalls))
    seconds = {
        "queued": start - submit,
        "launch": launched - start,
        "imports": segment - launched,
        "restore": training - segment,
        "train": end - training - stalls - lost,
        "stalls": stalls,
        "lost": lost,
        "final_save": 0.0,
        "drain": 0.0,
    }
    return Attempt(
        b.segment, b.attempt, "running" if running else "died", submit, start, end, b.first_step, b.step,
        lost_steps, seconds, job.limit_s if job else None, nodes=job.nodes if job else None,
    )  # fmt: skip
