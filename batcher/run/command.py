"""The command line a run folder was started with, for runs started by hand.

Without a workflow, the run folder defaults to ``runs/<script name>``, whatever the arguments:
``python train.py --lr 0.01`` after ``python train.py --lr 0.1`` would resume the old run, and
the old learning rate would come back with the optimizer's state. The first segment records its
command line in ``command.json``; a later one with different arguments is refused, with the
difference and the ways out.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from batcher.errors import BatcherError
from batcher.job_env import JobEnv
from batcher.run.atomic_files import atomic_write_bytes
from batcher.run.layout import RunLayout

__all__ = ["FILE", "check_command"]

FILE = "command.json"


def check_command(run_dir: Path, argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Record ``argv`` for a new run; refuse a resume of ``run_dir`` under other arguments.

    Raises :class:`BatcherError` naming the recorded and the current arguments, unless
    ``$BATCHER_ALLOW_CHANGED_ARGS`` is ``1`` (then the new command line is recorded).
    """
    path = run_dir / FILE
    current = [Path(argv[0]).name, *argv[1:]] if argv else []
    main_rank = env.get("RANK", "0") == "0"
    try:
        recorded = json.loads(path.read_text())["argv"]
    except FileNotFoundError:
        if RunLayout(run_dir).ckpt.exists() or not main_rank:
            return  # a run from before this record existed, or rank 0 writes it
        _write(path, current)
        return
    except (ValueError, KeyError, TypeError):
        recorded = None
    if recorded == current:
        return
    if JobEnv.from_env(env).allow_changed_args == "1":
        if main_rank:
            _write(path, current)
        return
    was, now = shlex.join(recorded or ["?"]), shlex.join(current)
    changed = sorted(set(recorded or []) ^ set(current))
    raise BatcherError(
        f"{run_dir} holds a run started as `{was}`, but this is `{now}` (differs in: "
        f"{' '.join(changed)}); resuming would bring back the old run's state, its optimizer's "
        "learning rate included. Give the new run its own folder (run_dir=... or "
        f"{JobEnv.variable('run_dir')}=...), or continue this run with the new arguments (e.g. "
        f"more epochs) with {JobEnv.variable('allow_changed_args')}=1"
    )


def _write(path: Path, argv: list[str]) -> None:
    atomic_write_bytes(path, (json.dumps({"argv": argv}) + "\n").encode(), what="command record")
