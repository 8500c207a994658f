# Config checks and the input functions of the rules. The logic lives in batcher.workflow (chain,
# launch) and the run folder's paths in batcher.run.layout; these functions only adapt them to
# Snakemake's wildcards, config and checkpoints.
import sys
from datetime import datetime, timezone
from pathlib import Path

from batcher.errors import BatcherError
from batcher.run.layout import (
    FINAL_PATTERN,
    FINALIZE_LOG_PATTERN,
    LOG_PATTERN,
    STATUS_PATTERN,
    ResultsLayout,
    RunLayout,
)
from batcher.run.status import read_status
from batcher.workflow import launch, width
from batcher.workflow.backfill import time_min_minutes
from batcher.workflow.chain import final_segment
from batcher.workflow.experiments import experiments_from
from batcher.workflow.sources import resolve_config


def _effective_config():
    """Profile settings, then config.yaml, then --config (batcher.workflow.sources): Snakemake
    itself lets a profile's configfile override config.yaml."""
    try:
        return resolve_config(
            config_file=Path("config.yaml"),
            profile_files=[Path(f) for f in workflow.config_settings.configfiles],
            overrides=dict(workflow.config_settings.config),
        )
    except BatcherError as exc:
        raise WorkflowError(str(exc)) from None


RESULT = (
    ResultsLayout.pattern()
)  # results/{exp}/...: what publish, curves and all ask for
_EFFECTIVE = _effective_config()
config.clear()
config.update(_EFFECTIVE.config)


def _load_experiments():
    try:
        # a bad save_every, stop_signal, min_time or narrow_after is refused now, not at the first submission
        launch.save_every(config)
        launch.stop_signal(config, 60)
        time_min_minutes(config.get("min_time"), 60)
        width.parse_narrow_after(config.get("narrow_after"))
        return experiments_from(
            config,
            config_files=[Path(f) for f in workflow.configfiles],
            workflow_dir=Path(workflow.basedir),
            base_dir=Path.cwd(),
        )
    except BatcherError as exc:
        raise WorkflowError(str(exc)) from None


EXPERIMENTS = _load_experiments()


wildcard_constraints:
    exp="|".join(map(lambda e: e.replace(".", r"\.").replace("+", r"\+"), EXPERIMENTS)),
    run="[0-9a-f]{8}",
    n="[0-9]{4}",


def run_layout(exp):
    return RunLayout.of(exp, EXPERIMENTS[exp].run_id)


def run_dir(exp):
    return str(run_layout(exp).root)


def last_segment(wildcards):
    """The status file that ends the chain (batcher.workflow.chain: one file read per segment)."""
    exp = EXPERIMENTS[wildcards.exp]
    request = lambda n: checkpoints.segment.get(
        exp=exp.name, run=exp.run_id, n=f"{n:04d}"
    )
    try:
        return str(final_segment(run_layout(exp.name), exp.length, request))
    except BatcherError as exc:
        raise WorkflowError(str(exc)) from None


def _experiment(wildcards):
    exp = EXPERIMENTS[wildcards.exp]
    if wildcards.get("run", exp.run_id) != exp.run_id:
        raise WorkflowError(
            f"runs/{exp.name}/{wildcards.run} belongs to earlier settings of {exp.name!r}; "
            f"the current ones train in {run_dir(exp.name)}"
        )
    return exp


def _checked(function, *args):
    try:
        return function(*args)
    except BatcherError as exc:
        raise WorkflowError(str(exc)) from None


def policy_clock():
    """Now, unless the profile pins the policy's clock (policy_now=ISO time) to test a time of day."""
    pinned = config.get("policy_now")
    if pinned:
        when = datetime.fromisoformat(str(pinned))
        if when.tzinfo is None:
            raise WorkflowError(
                f"policy_now={pinned!r} needs a UTC offset, e.g. 2026-11-27T19:59+01:00"
            )
        return when
    return datetime.now(timezone.utc)


def runtime_minutes(wildcards, attempt):
    """Slurm --time for the next segment: what the policy allows right now (at submission)."""
    return launch.job_minutes(_experiment(wildcards), policy_clock())


def slurm_extra(wildcards, attempt):
    exp = _experiment(wildcards)
    minutes = runtime_minutes(wildcards, attempt)
    return _checked(launch.slurm_extra, exp, config, minutes, _history(exp))


def segment_narrow_after(wildcards, attempt):
    """slurm-flat's narrow_after_s resource: how long an elastic segment waits for all its nodes
    (batcher.workflow.width)."""
    exp = _experiment(wildcards)
    limit_s = 60 * runtime_minutes(wildcards, attempt)
    history = _history(exp) if exp.elastic else []  # a fixed width reads no status file
    return _checked(
        width.narrow_after_s, config.get("narrow_after"), exp, limit_s, history
    )


def _history(exp):
    """The status files of the experiment's run so far (backfill and width read its history)."""
    return [s for s in map(read_status, run_layout(exp.name).statuses()) if s]


def segment_presubmit_key(wildcards):
    """slurm-flat's presubmit_key resource: the run folder, when presubmit is on."""
    executor = getattr(workflow.executor_plugin, "name", None)
    run = run_dir(_experiment(wildcards).name)
    return _checked(launch.presubmit_key, run, config, executor)


def segment_constraint(wildcards):
    """The plugin's constraint resource (sbatch -C): the site's GPU constraint for GPU jobs."""
    return _checked(launch.constraint, _experiment(wildcards), config)


def _task_resource(name):
    """One of the Slurm task resources of a segment (launch.task_resources)."""

    def resource(wildcards):
        executor = getattr(workflow.executor_plugin, "name", None)
        return _checked(
            launch.task_resources, _experiment(wildcards), config, executor
        )[name]

    return resource


def segment_threads(wildcards):
    return _checked(launch.threads, _experiment(wildcards), config)


def segment_command(wildcards, output, threads):
    """The shell command of one segment (batcher.workflow.launch)."""
    exp = _experiment(wildcards)
    return _checked(
        lambda: launch.segment_command(
            exp,
            segment=int(wildcards.n),
            status_file=output[0],
            run_dir=run_dir(exp.name),
            settings=config,
            python=sys.executable,
            minutes=runtime_minutes(wildcards, 1),
            threads=threads,
        )
    )
