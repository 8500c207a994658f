"""The job's environment, ``BATCHER_*``: the one contract between the two sides.

The workflow side (:mod:`batcher.workflow.launch`) builds a :class:`JobEnv` and writes it with
:meth:`JobEnv.to_env`; the in-job library reads it with :meth:`JobEnv.from_env` and nothing else
reads or builds ``BATCHER_*`` variables. Values stay the strings the environment holds: each is
parsed by the owner of its concept (a duration by ``timespec``, the signals by ``signals``, ...),
whose errors name the variable (:meth:`JobEnv.variable`). A person may set any of them by hand
too (``BATCHER_TIME_LIMIT=30s python train.py``). Pure Python, the ground floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["JobEnv"]

#: each field's variable; the one place the names are spelled
_VARIABLES = {
    "run_dir": "BATCHER_RUN_DIR",
    "status_file": "BATCHER_STATUS_FILE",
    "segment": "BATCHER_SEGMENT",
    "experiment": "BATCHER_EXPERIMENT",
    "policy": "BATCHER_POLICY",
    "deadline": "BATCHER_DEADLINE",
    "time_limit": "BATCHER_TIME_LIMIT",
    "signals": "BATCHER_SIGNALS",
    "slurm_signal": "BATCHER_SLURM_SIGNAL",
    "margin_s": "BATCHER_MARGIN_S",
    "keep": "BATCHER_KEEP",
    "save_every": "BATCHER_SAVE_EVERY",
    "progress_s": "BATCHER_PROGRESS_S",
    "launched": "BATCHER_LAUNCHED",
    "allow_changed_args": "BATCHER_ALLOW_CHANGED_ARGS",
}


@dataclass(frozen=True)
class JobEnv:
    """What the environment tells a segment; ``None``: not set (or set to the empty string).

    ``run_dir``: the run folder. ``status_file``, ``segment``, ``experiment``: where the workflow
    wants the status, the segment's number, the experiment's name (set only by the workflow).
    ``policy``: the time-limit policy's spec. ``deadline``/``time_limit``: an end time or a limit
    from the process start. ``signals``: the stop signals; ``slurm_signal``: sbatch's
    ``--signal`` value, Slurm's own warning. ``margin_s``, ``keep``, ``save_every``,
    ``progress_s``: the segment's options. ``launched``: unix time the job's shell started the
    command. ``allow_changed_args``: ``"1"`` continues a run started by hand with other arguments.
    """

    run_dir: str | None = None
    status_file: str | None = None
    segment: str | None = None
    experiment: str | None = None
    policy: str | None = None
    deadline: str | None = None
    time_limit: str | None = None
    signals: str | None = None
    slurm_signal: str | None = None
    margin_s: str | None = None
    keep: str | None = None
    save_every: str | None = None
    progress_s: str | None = None
    launched: str | None = None
    allow_changed_args: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobEnv:
        """Read the ``BATCHER_*`` variables of ``env`` (``os.environ`` in a job)."""
        return cls(**{name: env.get(var) or None for name, var in _VARIABLES.items()})

    def to_env(self) -> dict[str, str]:
        """The variables to set, for the fields that are set."""
        return {
            _VARIABLES[f.name]: value for f in fields(self) if (value := getattr(self, f.name)) is not None
        }

    @staticmethod
    def variable(field: str) -> str:
        """The variable of ``field``, for messages: ``JobEnv.variable("margin_s")`` is ``BATCHER_MARGIN_S``."""
        return _VARIABLES[field]

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(_VARIABLES.values())
