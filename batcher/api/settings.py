"""A segment's settings: ``batcher.segment``'s keywords, else the job's environment
(:class:`batcher.job_env.JobEnv`, which the workflow or the user's shell sets), else the defaults.

    BATCHER_RUN_DIR      run folder (default runs/<script name>)     BATCHER_MARGIN_S  learned
    BATCHER_KEEP         checkpoints kept: 2                         BATCHER_PROGRESS_S 60
    BATCHER_SIGNALS      SIGTERM,SIGUSR1,SIGURG                      BATCHER_SEGMENT   segment number
    BATCHER_EXPERIMENT   a name for the logs                         BATCHER_STATUS_FILE
    BATCHER_SAVE_EVERY   periodic saves: 30m (a duration, "500 steps" or "off")
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from batcher.ckpt.manifest import read_manifest
from batcher.ckpt.periodic import DEFAULT_SAVE_EVERY, SaveEvery
from batcher.errors import BatcherError
from batcher.job_env import JobEnv
from batcher.run.layout import RunLayout
from batcher.run.status import read_status
from batcher.stopping.signals import DEFAULT_STOP_SIGNALS, parse_signals

__all__ = ["DEFAULT_KEEP", "DEFAULT_PROGRESS_S", "Settings", "read_settings"]

DEFAULT_KEEP = 2  # checkpoints kept
DEFAULT_PROGRESS_S = 60.0  # seconds between progress lines in the log


@dataclass(frozen=True)
class Settings:
    """What one segment runs with, every value resolved."""

    run: RunLayout
    by_hand: bool  # not launched by the workflow, in the default run folder or BATCHER_RUN_DIR
    margin_s: float | None  # None: learned from the run's prediction errors (batcher.stopping.margin)
    keep: int
    signals: tuple[signal.Signals, ...]
    progress_every_s: float
    save_every: SaveEvery
    experiment: str
    segment: int
    status_file: Path
    launched: float | None = None  # BATCHER_LAUNCHED: when the job's shell started Python (unix s)
    attempt: str = ""  # this attempt at the segment: the Slurm job id, else pid<N>

    @property
    def heartbeat_file(self) -> Path:
        return self.run.heartbeat(self.segment, self.attempt)


def read_settings(
    env: Mapping[str, str],
    *,
    run_dir: str | os.PathLike[str] | None = None,
    margin_s: float | None = None,
    keep: int | None = None,
    signals: Iterable[str] | str | None = None,
    experiment: str | None = None,
    progress_every_s: float | None = None,
    save_every: object = None,
    argv: Sequence[str] = (),
) -> Settings:
    """Resolve a segment's settings: arguments first, then ``env``, then the defaults.

    ``argv`` (``sys.argv``) names the default run folder after the script. Bad values raise
    :class:`BatcherError` naming the variable and an example of a good one.
    """
    job = JobEnv.from_env(env)
    # the workflow (it sets the segment's number) names each run folder by the script's arguments
    by_hand = run_dir is None and job.segment is None
    if run_dir is not None:
        run = RunLayout(Path(run_dir))
    elif job.run_dir:
        run = RunLayout(Path(job.run_dir))
    else:
        script = Path(argv[0]).stem if argv and argv[0] not in ("", "-c") else "run"
        run = RunLayout.by_hand(script)
    index = _segment_index(job.segment, run)
    if margin_s is not None and not margin_s >= 0:
        raise BatcherError(f"batcher.segment(margin_s={margin_s!r}): the margin must be 0 or more seconds")
    return Settings(
        run=run,
        by_hand=by_hand,
        margin_s=margin_s if margin_s is not None else _number(job, "margin_s"),
        keep=keep if keep is not None else int(_number(job, "keep", DEFAULT_KEEP)),
        signals=parse_signals(signals if signals is not None else job.signals or DEFAULT_STOP_SIGNALS),
        progress_every_s=progress_every_s
        if progress_every_s is not None
        else _number(job, "progress_s", DEFAULT_PROGRESS_S),
        save_every=SaveEvery.parse(save_every, what="save_every")
        if save_every is not None
        else SaveEvery.parse(job.save_every or DEFAULT_SAVE_EVERY, what=JobEnv.variable("save_every")),
        experiment=experiment or job.experiment or run.root.name,
        segment=index,
        status_file=Path(job.status_file) if job.status_file else run.status(index),
        launched=_launched(job.launched),
        attempt=env.get("SLURM_JOB_ID") or f"pid{os.getpid()}",
    )


def _launched(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:  # only for the timeline of the status file: never worth failing a job
        return None


@overload
def _number(job: JobEnv, field: str) -> float | None: ...
@overload
def _number(job: JobEnv, field: str, default: float) -> float: ...
def _number(job: JobEnv, field: str, default: float | None = None) -> float | None:
    raw, key = getattr(job, field), JobEnv.variable(field)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BatcherError(f"{key}={raw!r} is not a number; write e.g. {key}=15") from None
    if value < 0:
        raise BatcherError(f"{key}={raw!r} must not be negative")
    return value


def _segment_index(raw: str | None, run: RunLayout) -> int:
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise BatcherError(f"{JobEnv.variable('segment')}={raw!r} is not an integer") from None
    # started by hand: one more than the segments that reported, and than the segment that made
    # the newest checkpoint (a segment killed after a periodic save reported nothing)
    try:
        reported = sum(1 for p in run.statuses() if read_status(p) is not None)
    except OSError:
        reported = 0
    entries, _ = read_manifest(run.ckpt)
    return max([reported, *(e.segment + 1 for e in entries or [])])
