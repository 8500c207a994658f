"""How a segment is started: its Slurm resources and its shell command (plain, torchrun, srun).

The Snakemake rule ``segment`` only calls these functions; they take the experiment, the
profile's settings (``config`` of the workflow) and the instant of submission, so every choice
is unit-tested without Snakemake or Slurm.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from batcher.ckpt.periodic import SaveEvery
from batcher.errors import BatcherError, ConfigError
from batcher.job_env import JobEnv
from batcher.limits.policy import policy_to_spec
from batcher.run.status import SegmentStatus
from batcher.stopping.signals import DEFAULT_STOP_SIGNALS
from batcher.stopping.slurm import parse_signal_spec
from batcher.workflow.backfill import time_min_minutes
from batcher.workflow.experiments import Experiment

__all__ = [
    "DEFAULT_STOP_SIGNAL",
    "constraint",
    "job_minutes",
    "presubmit_key",
    "save_every",
    "segment_command",
    "slurm_extra",
    "srun_tasks",
    "stop_signal",
    "task_resources",
    "threads",
    "uses_srun",
]

#: the sbatch --signal of profiles/das5: Slurm sends it to the job steps (the training, under srun);
#: URG is ignored by default, so nothing else in a step dies of it (USR1 would kill a shell)
DEFAULT_STOP_SIGNAL = "URG@60"
NO_POLICY_MINUTES = 24 * 60

# Each srun task is one rank; the first node of the job hosts the rendezvous.
_RANK_ENV = (
    "export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID "
    "LOCAL_WORLD_SIZE={tasks} "
    'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
    "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000)); exec "
)


def job_minutes(exp: Experiment, now: datetime) -> int:
    """Slurm ``--time`` in minutes for a segment submitted at ``now``: what the policy allows."""
    if exp.policy is None:
        return NO_POLICY_MINUTES
    return max(1, int(exp.policy(now).total_seconds() // 60))


def _stop_signal_spec(settings: Mapping[str, Any]) -> tuple[str, int, bool]:
    """The profile's ``stop_signal``: (name with SIG, lead in seconds, sent to the batch shell)."""
    spec = str(settings.get("stop_signal", DEFAULT_STOP_SIGNAL))
    try:
        name, lead_s = parse_signal_spec(spec)
    except ValueError as exc:
        raise ConfigError(
            f"stop_signal={spec!r}: {exc}; write a signal name and a lead in seconds, e.g. URG@60"
        ) from None
    return name, lead_s, spec.strip().startswith("B:")


def stop_signal(settings: Mapping[str, Any], minutes: int) -> str:
    """The sbatch ``--signal`` value: the profile's ``stop_signal``, its lead at most a third of the job."""
    name, lead_s, to_batch_shell = _stop_signal_spec(settings)
    batch = "B:" if to_batch_shell else ""  # to the batch shell, not the job steps
    return f"{batch}{name.removeprefix('SIG')}@{max(min(lead_s, minutes * 60 // 3), 1)}"


def stop_signals(settings: Mapping[str, Any]) -> str:
    """``BATCHER_SIGNALS``: the signals the job stops on, the profile's ``stop_signal`` among them
    (else it would kill the job without a save)."""
    name, _, _ = _stop_signal_spec(settings)
    return ",".join(dict.fromkeys([*DEFAULT_STOP_SIGNALS, name]))


def save_every(settings: Mapping[str, Any]) -> str:
    """``BATCHER_SAVE_EVERY`` for the workflow setting ``save_every``; a bad value raises ConfigError
    (when the workflow starts: workflow/rules/common.smk checks it first)."""
    value = settings.get("save_every")
    try:
        parsed = SaveEvery.parse(value, what="save_every")
    except BatcherError as exc:
        raise ConfigError(f"config: {exc}") from None
    return f"{parsed.steps} steps" if parsed.steps is not None else ("off" if parsed.off else str(value))


def slurm_extra(
    exp: Experiment, settings: Mapping[str, Any], minutes: int, history: Iterable[SegmentStatus] = ()
) -> str:
    """Extra sbatch options: the stop signal and the shortest limit backfill may give
    (``min_time``, at least what the run's ``history`` says a job needs;
    :mod:`batcher.workflow.backfill`). Options the Slurm plugin sets itself (``--constraint``,
    ``--nodes``, ...) it refuses here: they are resources (:func:`constraint`)."""
    parts = [f"--signal={stop_signal(settings, minutes)}"]
    shortest = time_min_minutes(settings.get("min_time"), minutes, history)
    if shortest is not None:
        parts.append(f"--time-min={shortest}")
    return " ".join(parts)


def presubmit_key(run_dir: str, settings: Mapping[str, Any], executor: str | None) -> str | None:
    """The ``slurm-flat`` executor's ``presubmit_key`` resource: the chain a segment's job belongs
    to (its run folder), when the workflow setting ``presubmit`` is on; else None. Refused where
    nothing would act on it (an executor other than ``slurm-flat``)."""
    value = settings.get("presubmit", False)
    if str(value).lower() not in ("true", "yes", "on"):  # False, "false", "no", "off"
        return None
    if executor not in ("slurm-flat", "dryrun", None):
        raise ConfigError(
            f"presubmit: true needs executor slurm-flat (profiles/das5), which submits each segment's "
            f"successor ahead; executor {executor!r} would ignore it. Use slurm-flat, or set it off "
            "(--config presubmit=false; profiles/das5 turns it on)"
        )
    return run_dir


def constraint(exp: Experiment, settings: Mapping[str, Any]) -> str | None:
    """The Slurm plugin's ``constraint`` resource (``sbatch -C``): the site's ``gpu_constraint``
    for GPU experiments, else None."""
    return str(settings["gpu_constraint"]) if exp.gpus and settings.get("gpu_constraint") else None


def uses_srun(exp: Experiment, settings: Mapping[str, Any]) -> bool:
    """True when the segment runs as a Slurm job step of its own (``launcher=srun``): one srun task
    per rank, or one task for a single rank.

    The step is what receives the job's stop signal (sbatch ``--signal`` without ``B:`` signals
    job steps only), and profiles/das5's executor (slurm-flat) runs the rule's shell directly in
    the batch job, without a job step of its own. Raises :class:`ConfigError` for more than one
    node on a profile without srun.
    """
    if settings.get("launcher") == "srun":
        return True
    if exp.nodes > 1:
        raise ConfigError(
            f"experiment {exp.name!r} asks for {exp.nodes_spec} nodes, but this profile runs on one "
            "machine; use a Slurm profile with launcher=srun (profiles/das5), or set nodes: 1"
        )
    return False


def srun_tasks(exp: Experiment, settings: Mapping[str, Any]) -> bool:
    """True when Slurm must allocate the ranks as tasks (Snakemake's ``nodes``/``tasks``/``mpi``
    resources): srun starts more than one rank. A single rank is an ordinary one-task job."""
    return uses_srun(exp, settings) and exp.ranks > 1


def task_resources(
    exp: Experiment, settings: Mapping[str, Any], executor: str | None = None
) -> dict[str, int | str | None]:
    """Snakemake's ``nodes``, ``tasks``, ``tasks_per_node``, ``tasks_per_gpu`` and ``mpi`` resources:
    how the Slurm plugin asks for the ranks that the segment's srun starts (all None when it
    starts one rank or none); and ``node_range`` for an elastic width, which only the ``slurm-flat``
    executor submits (``--nodes=MIN-MAX --exclusive``: whole nodes, as many as are free; the stock
    plugin takes whole numbers only), so ``executor`` ``slurm`` is refused for it.

    The job's layout must be the step's, ``exp.tasks`` ranks on each of ``exp.nodes`` nodes. A
    total alone does not say that: with ``--nodes=2 --ntasks=4`` Slurm may give one node 3 tasks
    and the other 1, and the step's ``--ntasks-per-node=2`` would not fit. So several ranks on
    each of several nodes are asked per node. ``tasks_per_gpu=0`` keeps the plugin from turning
    the rank count into ``--ntasks-per-gpu`` for GPU jobs, whose GPUs are per node (``--gres``).
    """
    if not srun_tasks(exp, settings):
        return dict.fromkeys(("nodes", "tasks", "tasks_per_node", "tasks_per_gpu", "mpi", "node_range"))
    if exp.elastic:
        if executor == "slurm":
            raise ConfigError(
                f"experiment {exp.name!r} asks for {exp.nodes_spec} nodes, a range, which the stock "
                "slurm executor cannot submit; use executor: slurm-flat (profiles/das5) or a whole "
                "number of nodes"
            )
        # the upstream plugin asks for nothing of its own (its --ntasks=1 is replaced)
        none = dict.fromkeys(("nodes", "tasks", "tasks_per_node", "mpi"))
        return {**none, "tasks_per_gpu": 0, "node_range": exp.nodes_spec}
    per_node = exp.nodes > 1 and exp.tasks > 1
    return {
        "nodes": exp.nodes,
        "tasks": None if per_node else exp.ranks,
        "tasks_per_node": exp.tasks if per_node else None,
        "tasks_per_gpu": 0,
        "mpi": "srun",
        "node_range": None,
    }


def threads(exp: Experiment, settings: Mapping[str, Any]) -> int:
    """CPUs of the job (one process or torchrun on one node), or of each srun task (one per rank)."""
    return exp.cpus if uses_srun(exp, settings) else exp.cpus * exp.tasks


def segment_command(
    exp: Experiment,
    *,
    segment: int,
    status_file: str,
    run_dir: str,
    settings: Mapping[str, Any],
    python: str,
    minutes: int,
    threads: int,
) -> str:
    """The shell command of one segment: the experiment's script, started as its ranks need, with
    the environment that tells the in-job library where it runs and how it will be stopped."""
    env = {
        **JobEnv(
            run_dir=run_dir,
            status_file=status_file,
            segment=str(segment),
            experiment=exp.name,
            policy=policy_to_spec(exp.policy),
            signals=stop_signals(settings),
            slurm_signal=stop_signal(settings, minutes),
            keep=str(settings["keep"]) if "keep" in settings else None,
            margin_s=str(settings["margin_s"]) if "margin_s" in settings else None,
            save_every=save_every(settings) if "save_every" in settings else None,
        ).to_env(),
        "OMP_NUM_THREADS": str(exp.cpus if exp.ranks > 1 else threads),  # per rank
    }
    argv = [python, exp.script, *exp.command_args()]
    if srun_tasks(exp, settings):
        # an elastic width runs on every node the job got (srun's default), T ranks on each
        fixed = [] if exp.elastic else [f"--nodes={exp.nodes}", f"--ntasks={exp.ranks}"]
        argv = [
            "srun",
            *fixed,
            f"--ntasks-per-node={exp.tasks}",
            f"--cpus-per-task={exp.cpus}",
            "--kill-on-bad-exit=1",
            "bash",
            "-c",
            _RANK_ENV.format(tasks=exp.tasks) + shlex.join(argv),
        ]
    elif uses_srun(exp, settings):  # one rank, in a step of its own (the stop signal reaches steps)
        # --overlap: under the stock slurm executor this runs inside Snakemake's own step, which
        # holds the job's CPUs; without it the step would wait for them forever
        argv = ["srun", "--nodes=1", "--ntasks=1", f"--cpus-per-task={threads}", "--overlap", *argv]
    elif exp.tasks > 1:  # torchrun: one process per task on this node, RANK/WORLD_SIZE set for each
        argv = [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={exp.tasks}",
            *argv[1:],
        ]
    # launched: when the job's shell starts Python, for the status file's timeline
    env_text = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    launched = JobEnv.variable("launched")
    return f'{env_text} {launched}="$(date +%s.%N)" exec ' + shlex.join(argv)
