"""Pre-submitted successors: the next job of a chain waits in the queue while the current one runs.

A chain (jobs with the same ``presubmit_key`` resource, e.g. the segments of one training run) is
submitted one job at a time: Snakemake asks for segment N+1 only once segment N has ended, so that
job queues behind everything submitted while N ran. With pre-submission, as soon as job N is
submitted, a *successor* is submitted too: the same sbatch request, held by
``--dependency=afterany:N``, whose batch script waits for a *ticket* (a file with the command to run).
When Snakemake asks for the chain's next job, the executor writes that job's command into the
successor's ticket instead of submitting (lowering its time limit if the job needs less; a job that
needs more than the successor asked for is submitted anew), and tracks the successor as the job.

A successor that no job takes over (the chain ended) exits after :data:`TICKET_WAIT_S` once it
starts, and pending ones are cancelled when the workflow ends or is interrupted. Who has a started
successor is settled by one atomic ``mkdir`` of its *claim*: the executor makes it before writing
the ticket, the waiter before giving up, and whoever comes second yields (the executor then submits
anew; the waiter waits for the ticket that is coming). Each pending successor is also recorded on
disk (``after-<job>.json``) until it is taken or cancelled, so that a Snakemake that was killed
leaves none behind: the next one on the same work directory cancels them first. What it costs:
the seconds a started successor waits for its ticket (Snakemake's status check, then the DAG update;
the time account shows them as ``launch``), and whole-node jobs held pending by a dependency.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TICKET_WAIT_S", "Successor", "Successors", "claim_of", "limit_minutes", "waiter_script"]

#: how long a started successor waits for a job to take it over before it exits
TICKET_WAIT_S = 120

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Successor:
    """A pending job that the chain ``key``'s next job may take over: Slurm job ``job_id``, the
    ``ticket`` it runs once written, its ``log``, and the sbatch request it was made with
    (``request``, without dependency, output or script), for the successor after it."""

    key: str
    job_id: str
    ticket: Path
    log: Path
    request: str


def waiter_script(ticket: Path, wait_s: int = TICKET_WAIT_S) -> str:
    """The successor's batch script: run the ticket once it is written, or exit after ``wait_s``
    unless a job claimed it meanwhile (then it waits as long again for the ticket)."""
    t, claim = shlex.quote(str(ticket)), shlex.quote(str(claim_of(ticket)))
    wait = f"for i in $(seq {wait_s * 5}); do [ -s {t} ] && exec bash {t}; sleep 0.2; done"
    return (
        f"{wait}; "
        f'mkdir {claim} 2>/dev/null && {{ echo "no job took this pre-submitted successor over in {wait_s}s"; exit 0; }}; '
        f"{wait}; "
        f'echo "a job claimed this pre-submitted successor but wrote no ticket in {wait_s}s" >&2; exit 1'
    )


def claim_of(ticket: Path) -> Path:
    """The folder whose creation gives a successor to the executor or to its own give-up."""
    return ticket.with_suffix(".claim")


def limit_minutes(text: str) -> int | None:
    """squeue's time limit (``[D-]HH:MM:SS``, ``MM:SS``) in whole minutes; None when unlimited."""
    days, _, clock = text.strip().rpartition("-")
    try:
        parts = [int(x) for x in clock.split(":")]
    except ValueError:
        return None
    while len(parts) < 3:
        parts.insert(0, 0)
    return (int(days or 0) * 24 + parts[0]) * 60 + parts[1] + (1 if parts[2] else 0)


class Successors:
    """The pending successor of each chain, kept under ``folder`` (tickets and logs)."""

    def __init__(self, folder: Path, *, run: Runner = subprocess.run) -> None:
        self.folder, self._run = folder, run
        self._pending: dict[str, Successor] = {}
        self._tickets: list[Path] = []  # written, removed when the workflow ends

    def submit(self, key: str, *, after: str, request: str) -> Successor | None:
        """Submit the successor of job ``after`` of chain ``key`` with the sbatch ``request`` (the
        job's own, as the Slurm plugin made it); None when sbatch refuses (the chain then goes on
        without one)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ticket = self.folder / f"after-{after}.sh"
        log = self.folder / f"after-{after}.log"
        call = (
            f"{request} --dependency=afterany:{after} --kill-on-invalid-dep=yes "
            f"--output {shlex.quote(str(log))} --wrap={shlex.quote(waiter_script(ticket))}"
        )
        out = self._run(call, shell=True, capture_output=True, text=True, timeout=60)
        job_id = out.stdout.strip().split(";")[0]
        if out.returncode != 0 or not job_id.isdigit():
            return None
        successor = Successor(key, job_id, ticket, log, request)
        self._pending[key] = successor
        _write_whole(_record_of(ticket), json.dumps({"key": key, "job_id": job_id}))
        return successor

    def take(self, key: str, command: str, *, runtime_min: int | None) -> Successor | None:
        """Give chain ``key``'s pending successor the job ``command`` to run, its time limit
        lowered to ``runtime_min`` when that is less. None (and the successor cancelled) when there
        is none, it is no longer waiting, or it asked for less time than the job needs."""
        successor = self._pending.pop(key, None)
        if successor is None:
            return None
        out = self._run(
            ["squeue", "-h", "-j", successor.job_id, "-o", "%T|%l"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        state, _, limit = out.stdout.strip().partition("|")
        if out.returncode != 0 or state not in ("PENDING", "RUNNING"):
            self._drop(successor)
            return None
        has = limit_minutes(limit)
        if runtime_min is not None and has is not None and has != runtime_min:
            if has < runtime_min or not self._set_limit(successor.job_id, runtime_min):
                self._drop(successor)
                return None
        try:
            claim_of(successor.ticket).mkdir()
        except FileExistsError:  # it gave up waiting a moment ago: a fresh job instead
            self._drop(successor)
            return None
        _write_whole(successor.ticket, command + "\n")  # the waiter tests for a non-empty file
        self._tickets.append(successor.ticket)
        _record_of(successor.ticket).unlink(missing_ok=True)
        return successor

    def _set_limit(self, job_id: str, minutes: int) -> bool:
        out = self._run(
            ["scontrol", "update", f"JobId={job_id}", f"TimeLimit={minutes}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.returncode == 0

    def cancel_all(self) -> None:
        """Cancel every successor no job took over and remove the tickets (the workflow ends or is
        interrupted: its jobs are over, or being cancelled)."""
        for successor in self._pending.values():
            _record_of(successor.ticket).unlink(missing_ok=True)
        self._cancel([s.job_id for s in self._pending.values()])
        self._pending.clear()
        for ticket in self._tickets:
            ticket.unlink(missing_ok=True)
            shutil.rmtree(claim_of(ticket), ignore_errors=True)
        self._tickets.clear()

    def cancel_left_over(self) -> list[str]:
        """Cancel the successors that an earlier Snakemake on this folder submitted and never
        took over or cancelled (it was killed); return their job ids. Call before submitting any."""
        ids = []
        for record in sorted(self.folder.glob("after-*.json")):
            try:
                job_id = str(json.loads(record.read_text())["job_id"])
            except (OSError, ValueError, KeyError, TypeError):
                job_id = ""
            if job_id.isdigit() and job_id not in {s.job_id for s in self._pending.values()}:
                ids.append(job_id)
            record.unlink(missing_ok=True)
        self._cancel(ids)
        return ids

    def _drop(self, successor: Successor) -> None:
        self._cancel([successor.job_id])
        _record_of(successor.ticket).unlink(missing_ok=True)

    def _cancel(self, ids: list[str]) -> None:
        if ids:
            self._run(["scancel", *ids], capture_output=True, text=True, timeout=60)

    @property
    def pending(self) -> dict[str, Successor]:
        return dict(self._pending)


def without_output(request: str) -> str:
    """The Slurm plugin's sbatch request with its ``--output`` left out (a successor logs apart)."""
    return re.sub(r" --output (?:'[^']*'|\S+)", "", request)


def _record_of(ticket: Path) -> Path:
    return ticket.with_suffix(".json")


def _write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole, or not at all (renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
