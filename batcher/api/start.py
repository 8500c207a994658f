"""``batcher.segment(...)``: resolve a segment's settings, deadline and objects, then open it
(take the run lock, restore the newest good checkpoint) and hand it to the train script."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import IO, Any

from batcher.api.loop import Segment
from batcher.api.settings import read_settings
from batcher.ckpt.captured import Stateful, check_stateful
from batcher.ckpt.store import CheckpointStore
from batcher.errors import BatcherError
from batcher.limits.policy import Policy
from batcher.run.command import check_command
from batcher.stopping.deadline import process_start_time, resolve_deadline
from batcher.stopping.decision import DeadlineSeconds, StopDecision
from batcher.stopping.signals import StopSignals
from batcher.stopping.slurm import Runner, SlurmWarning

__all__ = ["segment"]

_OPTIONS = {  # batcher.segment's own keywords, and what each is for (named in collision errors)
    "run_dir": "the run folder",
    "values": "plain values kept in the checkpoint",
    "deadline": "an end time",
    "time_limit": "a time limit",
    "policy": "the time-limit policy",
    "margin_s": "seconds kept free before the deadline",
    "keep": "checkpoints kept",
    "signals": "the stop signals",
    "experiment": "a name for the logs",
    "progress_every_s": "seconds between progress lines",
    "save_every": "how often to save while training",
    "clock": "the clock",
    "env": "the environment to read settings from",
    "out": "where messages go",
    "store": "the checkpoint store",
    "slurm_query": "how to ask Slurm for the job's end time",
}


def segment(
    *,
    run_dir: str | os.PathLike[str] | None = None,
    values: Mapping[str, Any] | None = None,
    deadline: datetime | str | None = None,
    time_limit: Any = None,
    policy: Policy | None = None,
    margin_s: float | None = None,
    keep: int | None = None,
    signals: Iterable[str] | str | None = None,
    experiment: str | None = None,
    progress_every_s: float | None = None,
    save_every: Any = None,
    clock: Callable[[], float] = time.time,
    env: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    store: CheckpointStore | None = None,
    slurm_query: Runner | None = None,
    objects: Mapping[str, Any] | None = None,
    **more_objects: Any,
) -> Segment:
    """Return the current segment of a run, with every object restored from its last checkpoint.

    Pass what must survive a stop as keywords (``model=..., optimizer=...``: anything with
    ``state_dict()``/``load_state_dict()``), or as ``objects={...}`` when a name is one of these
    options (``objects={"policy": policy_net, "env": env}``); plain values and tensors as
    ``values={...}`` (read them back from ``seg.values``). The run folder is ``run_dir``, else
    ``$BATCHER_RUN_DIR``, else ``runs/<script name>``.

    The deadline is the earliest of ``deadline``/``time_limit``, ``$BATCHER_DEADLINE``,
    ``$BATCHER_TIME_LIMIT``, the Slurm job's end time and the ``policy`` (or ``$BATCHER_POLICY``)
    window; with none of them the loop runs to its end. ``save_every`` (default ``"30m"``, or
    ``$BATCHER_SAVE_EVERY``; a duration, a number of steps, or ``"off"``) saves in the background
    while training goes on, so that a crash loses at most that much. ``margin_s`` (or
    ``$BATCHER_MARGIN_S``) seconds are kept free before the deadline; without it the margin is
    learned from the run's own prediction errors (:mod:`batcher.stopping.margin`: 15 s until 20 steps
    were measured, then down to 2 s for a predictable run). ``clock``, ``env``, ``out``,
    ``store`` and ``slurm_query`` (``(argv, timeout_s) -> stdout``) replace the real ones in tests.
    """
    given = {k: v for k, v in locals().items() if k in _OPTIONS}
    named = _user_objects(given, dict(objects or {}), more_objects)
    env = os.environ if env is None else env
    settings = read_settings(
        env,
        run_dir=run_dir,
        margin_s=margin_s,
        keep=keep,
        signals=signals,
        experiment=experiment,
        progress_every_s=progress_every_s,
        save_every=save_every,
        argv=sys.argv,
    )
    if settings.by_hand:  # started by hand: a folder does not tell arguments apart
        check_command(settings.run.root, sys.argv, env)
    now = clock()
    started = (
        process_start_time(launched=settings.launched)
        if clock is time.time
        else datetime.fromtimestamp(now, tz=timezone.utc)
    )
    query = {} if slurm_query is None else {"run": slurm_query}
    found = resolve_deadline(
        now=datetime.fromtimestamp(now, tz=timezone.utc),
        env=env,
        deadline=deadline,
        time_limit=time_limit,
        policy=policy,
        started=started,
        **({} if slurm_query is None else {"slurm_run": slurm_query}),
    )
    out = sys.stderr if out is None else out
    signals_ = StopSignals(settings.signals)
    seg: Segment | None = None

    def say(message: str) -> None:
        if seg is not None:
            seg._report.say(message)

    stop = StopDecision(
        DeadlineSeconds(found),
        margin_s=settings.margin_s,
        signals=signals_,
        slurm_warning=SlurmWarning.from_env(env, **query),
        say=say,
    )
    seg = Segment(
        named,
        settings=settings,
        values=values or {},
        stop=stop,
        clock=clock,
        out=out,
        store=store or CheckpointStore(settings.run.ckpt, keep=settings.keep),
    )
    try:
        seg._open()
    except BaseException:
        seg._close()
        raise
    return seg


def _user_objects(
    options: Mapping[str, Any], objects: dict[str, Any], more: Mapping[str, Any]
) -> dict[str, Any]:
    """The objects to checkpoint, by name; an option given something that looks like one (a
    network passed as ``policy=``, a gym environment as ``env=``) is an error, never a silent mix-up."""
    from torch.utils.data import DataLoader

    for name, value in options.items():
        # a policy network has state_dict(); a gym environment often has none, but is no mapping
        misplaced = (isinstance(value, Stateful) and name != "store") or (
            name == "env" and value is not None and not isinstance(value, Mapping)
        )
        if misplaced:
            raise BatcherError(
                f"batcher.segment({name}=...) got a {type(value).__name__}, but {name!r} is batcher's "
                f"option for {_OPTIONS[name]}: your object would not be checkpointed. Pass it as "
                f"batcher.segment(..., objects={{{name!r}: ...}}), or under another keyword"
            )
    both = sorted(set(objects) & set(more))
    if both:
        raise BatcherError(
            f"batcher.segment: {both} given both as keywords and in objects={{...}}; give each once"
        )
    named = {**objects, **more}
    # a plain DataLoader resumes by replaying its epoch (seg.iterate), it has no state to save
    named = {
        k: v for k, v in named.items() if not (isinstance(v, DataLoader) and not hasattr(v, "state_dict"))
    }
    check_stateful(named)
    return named
