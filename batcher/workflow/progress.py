"""Where each experiment stands: read from its run folder (status files, lock, metrics) and squeue."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batcher.errors import SlotTooShortError
from batcher.run.layout import RunLayout
from batcher.run.lock import is_locked
from batcher.run.status import SegmentStatus, read_status
from batcher.stopping.margin import DEFAULT_MARGIN_S
from batcher.workflow.eta import SegmentCost, simulate_finish
from batcher.workflow.experiments import Experiment

__all__ = ["ExperimentProgress", "experiment_progress"]


@dataclass
class ExperimentProgress:
    """One row of ``batcher status``."""

    experiment: str
    state: str  # not started | running | unfinished | stuck | done | failed
    run_dir: str
    segments: int
    progress: float  # 0..1 of the configured length
    epoch: float
    length: int
    last_stop: str | None
    useful_s_per_segment: float | None
    eta: str | None  # ISO time
    eta_segments: int | None
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _failure(run: RunLayout, next_index: int) -> str | None:
    log = run.log(next_index)
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if any("Error" in line or "Traceback" in line for line in lines):
        return lines[-1][:300] if lines else None
    return None


def experiment_progress(exp: Experiment, *, root: Path, now: datetime | None = None) -> ExperimentProgress:
    """Return the state, progress and simulated finishing time of one experiment."""
    now = now or datetime.now(timezone.utc)
    run = RunLayout.of(exp.name, exp.run_id, base=root)
    statuses = [s for s in (read_status(p) for p in run.statuses()) if s]
    last = statuses[-1] if statuses else None
    epoch = 0.0
    if last is not None:
        epoch = float(last.epoch)
        if last.progress is not None and last.total:
            epoch = last.progress * last.total  # counts a part-done epoch too
    progress = min(1.0, epoch / exp.length) if exp.length else 1.0
    done = last is not None and last.is_final(exp.length)
    running = is_locked(run.lock) if run.lock.exists() else False
    problem = None
    if done:
        state = "done"
    elif running:
        state = "running"
    elif (problem := _failure(run, len(statuses))) is not None:
        # the library's SlotTooShortError: a step plus a save does not fit in a job
        state = "stuck" if "no progress possible" in problem else "failed"
    elif statuses:
        state = "unfinished"
    else:
        state = "not started"
    trained = [s for s in statuses if s.steps_this_segment]
    useful = statistics.mean(s.seconds.train for s in trained) if trained else None
    eta = eta_segments = None
    if not done and trained:
        train_s = sum(s.seconds.train for s in trained)
        per_epoch = train_s / max(epoch, 1e-9)
        overhead = statistics.median(max(0.0, s.seconds.wall - s.seconds.train) for s in trained)
        gaps = _gaps(statuses)
        cost = SegmentCost(
            overhead_s=overhead + DEFAULT_MARGIN_S,
            gap_s=statistics.median(gaps) if gaps else SegmentCost.gap_s,
        )
        try:
            finish, eta_segments = simulate_finish(
                now=now, remaining_train_s=per_epoch * (exp.length - epoch), policy=exp.policy, cost=cost
            )
            eta = finish.isoformat()
        except SlotTooShortError as exc:
            if state == "unfinished":
                state = "stuck"
            problem = problem or f"stuck: {exc}"
    return ExperimentProgress(
        experiment=exp.name,
        state=state,
        run_dir=str(run.root),
        segments=len(statuses),
        progress=progress,
        epoch=round(epoch, 3),
        length=exp.length,
        last_stop=last.stop_reason if last else None,
        useful_s_per_segment=useful,
        eta=eta if not done or last is None else last.ended,
        eta_segments=eta_segments,
        problem=problem,
    )


def _gaps(statuses: list[SegmentStatus]) -> list[float]:
    out = []
    for a, b in itertools.pairwise(statuses):
        try:
            gap = (
                datetime.fromisoformat(b.started or "") - datetime.fromisoformat(a.ended or "")
            ).total_seconds()
        except (ValueError, TypeError):
            continue
        if gap >= 0:
            out.append(gap)
    return out
