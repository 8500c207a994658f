# Config checks and the input functions that walk each experiment's segment chain.
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from batcher.errors import BatcherError
from batcher.experiments import load_experiments, read_config_text
from batcher.policy import policy_to_spec
from batcher.status import read_status


def _load_experiments():
    schema = yaml.safe_load(
        Path(workflow.basedir, "workflow/schemas/config.schema.yaml").read_text()
    )
    files = [Path(f) for f in workflow.configfiles] or [Path("config.yaml")]
    source = files[-1].read_text() if files[-1].is_file() else None
    try:
        if source is not None:
            read_config_text(source)  # duplicate keys, which YAML would silently merge
        return load_experiments(
            config,
            schema=schema,
            source=source,
            filename=str(files[-1]),
            base_dir=Path.cwd(),
        )
    except BatcherError as exc:
        raise WorkflowError(str(exc)) from None


EXPERIMENTS = _load_experiments()
SEG = "runs/{exp}/{run}/status/seg-{n}.json"


wildcard_constraints:
    exp="|".join(map(lambda e: e.replace(".", r"\.").replace("+", r"\+"), EXPERIMENTS)),
    run="[0-9a-f]{8}",
    n="[0-9]{4}",


def run_dir(exp):
    return f"runs/{exp}/{EXPERIMENTS[exp].run_id}"


def seg_path(exp, n):
    return SEG.format(exp=exp, run=EXPERIMENTS[exp].run_id, n=f"{n:04d}")


def is_final(status, exp):
    """The chain ends at a segment that reports done for at least the configured length."""
    total = status.get("total")
    return status["status"] == "done" and (
        total is None or total >= EXPERIMENTS[exp].length
    )


def last_segment(wildcards):
    """The status file that ends the chain; asks Snakemake for the next segment until one does.

    Reads the small status files already on disk instead of calling .get() on every segment,
    so restarting a long finished chain costs one file read per segment, not a DAG re-evaluation.
    This is also what orders a chain: segment N is asked for only once segment N-1's status file
    says unfinished, so at most one segment per experiment is ever scheduled.
    """
    exp = wildcards.exp
    n = 0
    while True:
        status = read_status(Path(seg_path(exp, n)))
        if status is None:
            checkpoints.segment.get(exp=exp, run=EXPERIMENTS[exp].run_id, n=f"{n:04d}")
            status = read_status(Path(seg_path(exp, n)))
            if status is None:
                raise WorkflowError(
                    f"{seg_path(exp, n)} is not a torch-batcher status file; remove it to rerun that segment"
                )
        if is_final(status, exp):
            return seg_path(exp, n)
        n += 1


def _experiment(wildcards):
    exp = EXPERIMENTS[wildcards.exp]
    if wildcards.get("run", exp.run_id) != exp.run_id:
        raise WorkflowError(
            f"runs/{exp.name}/{wildcards.run} belongs to earlier settings of {exp.name!r}; "
            f"the current ones train in runs/{exp.name}/{exp.run_id}"
        )
    return exp


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
    policy = _experiment(wildcards).policy
    if policy is None:
        return 60 * 24
    limit = policy(policy_clock())
    return max(1, int(limit.total_seconds() // 60))


def stop_signal(wildcards, attempt=1):
    """The sbatch --signal value: the profile's stop_signal, its lead at most a third of the job."""
    name, _, lead = str(config.get("stop_signal", "URG@60")).partition("@")
    lead_s = min(int(lead or 60), runtime_minutes(wildcards, attempt) * 60 // 3)
    return f"{name}@{max(lead_s, 1)}"


def slurm_extra(wildcards, attempt):
    """Extra sbatch options: the stop signal and, for GPU experiments, the site's constraint."""
    exp = _experiment(wildcards)
    parts = [f"--signal={stop_signal(wildcards, attempt)}"]
    if exp.gpus and config.get("gpu_constraint"):
        parts.append(f"--constraint={config['gpu_constraint']}")
    return " ".join(parts)


def _ranks(wildcards):
    exp = _experiment(wildcards)
    return exp.nodes * exp.tasks


def _srun(wildcards):
    """True when Slurm starts the ranks itself: one srun task per rank (profiles/das5)."""
    exp = _experiment(wildcards)
    if config.get("launcher") == "srun":
        return _ranks(wildcards) > 1
    if exp.nodes > 1:
        raise WorkflowError(
            f"experiment {exp.name!r} asks for {exp.nodes} nodes, but this profile runs on one "
            "machine; use a Slurm profile with launcher=srun (profiles/das5), or set nodes: 1"
        )
    return False


def segment_threads(wildcards):
    """CPUs of the job (torchrun on one node) or of each srun task (one per rank)."""
    exp = _experiment(wildcards)
    return exp.cpus if _srun(wildcards) else exp.cpus * exp.tasks


# Each srun task is one rank; the first node of the job hosts the rendezvous.
_RANK_ENV = (
    "export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID "
    "LOCAL_WORLD_SIZE={tasks} "
    'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
    "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000)); exec "
)


def _srun_argv(exp, argv):
    """srun starts nodes x tasks copies of ``argv`` in the job's allocation, each told its rank."""
    return [
        "srun",
        f"--nodes={exp.nodes}",
        f"--ntasks={exp.nodes * exp.tasks}",
        f"--ntasks-per-node={exp.tasks}",
        f"--cpus-per-task={exp.cpus}",
        "--kill-on-bad-exit=1",
        "bash",
        "-c",
        _RANK_ENV.format(tasks=exp.tasks) + shlex.join(argv),
    ]


def segment_command(wildcards, output, threads):
    """The shell command of one segment: the experiment's script with the batcher environment."""
    exp = _experiment(wildcards)
    env = {
        "BATCHER_RUN_DIR": run_dir(exp.name),
        "BATCHER_STATUS_FILE": output[0],
        "BATCHER_SEGMENT": str(int(wildcards.n)),
        "BATCHER_EXPERIMENT": exp.name,
        "BATCHER_POLICY": policy_to_spec(exp.policy),
        "BATCHER_SIGNALS": "SIGTERM,SIGUSR1,SIGURG",
        "BATCHER_SLURM_SIGNAL": stop_signal(wildcards),
        "OMP_NUM_THREADS": str(threads),
    }
    if "keep" in config:
        env["BATCHER_KEEP"] = str(config["keep"])
    if "margin_s" in config:
        env["BATCHER_MARGIN_S"] = str(config["margin_s"])
    argv = [sys.executable, exp.script, *exp.command_args()]
    if _srun(wildcards):
        argv = _srun_argv(exp, argv)
    elif exp.tasks > 1:
        # torchrun: one process per task on this node, RANK/WORLD_SIZE set for each
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={exp.tasks}",
            *argv[1:],
        ]
    if exp.nodes * exp.tasks > 1:
        env["OMP_NUM_THREADS"] = str(exp.cpus)  # per rank
    return (
        " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        + " exec "
        + shlex.join(argv)
    )
