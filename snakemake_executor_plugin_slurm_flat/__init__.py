"""Snakemake's Slurm executor, polling job status on a flat, short cadence (executor ``slurm-flat``).

The stock plugin (snakemake-executor-plugin-slurm 2.x) waits 10 s longer after every status
check that finds no finished job, up to 180 s, and only resets after a check that finds one.
A chain of 15-minute segments therefore waits on average over a minute between a job's end and
the next submission (see README "Performance"). This executor is the same plugin with one
change: it waits ``--slurm-flat-init-seconds-before-status-checks`` between status checks,
always. One status query covers all jobs of the run, so a 2 s cadence costs Slurm one squeue
call every 2 s.

A second change cuts both Snakemake starts from a job that only runs a shell command. Upstream,
the batch job runs Snakemake with the ``slurm-jobstep`` executor, which starts ``srun`` and, inside
that step, Snakemake once more to run the rule (about 3 s per job on the test cluster, and two more
parses of the Snakefile). Here the batch job runs the rule's shell command itself
(:func:`direct_command`): it makes the output and log folders, removes old outputs, and runs the
command under ``bash`` with Snakemake's strict mode, as Snakemake's own job would; Snakemake's
bookkeeping (the outputs' check, metadata, retries) stays on the head node, where it happens for
every remote job anyway. A job that needs Snakemake inside it (a ``run:`` or ``script:`` rule, a
group, conda or containers, shadow folders, a benchmark, storage plugins, array jobs) runs
Snakemake with the ``local`` executor instead, still one Snakemake start less than upstream. The
workflow's segment rule starts its training under ``srun`` (batcher.workflow.launch.uses_srun), so
the job's stop signal, which Slurm sends to job steps, still reaches it.

A third change lets a job ask for a range of nodes (``sbatch --nodes=MIN-MAX``), which the stock
plugin refuses (its ``nodes`` resource is a whole number, and ``--nodes`` in ``slurm_extra`` is
refused too): a job with the resource ``node_range`` (``"1-2"``) is submitted with
``--nodes=1-2 --exclusive`` in place of the plugin's ``--ntasks`` (:func:`with_node_range`). Slurm
(select/cons_tres) then gives it as many whole nodes of the range as are free when it starts, and
starts it on fewer rather than wait. (With a task count, or tasks per node, it gives the fewest
nodes those fit on, or waits for all of them; the job's step lays out its ranks itself.) With the
resource ``narrow_after_s`` as well, the job asks for the range's largest count first and gets the
range once it has waited that long (:mod:`.narrowing`).

A fourth change pre-submits the next job of a chain (jobs with the same ``presubmit_key``
resource): a successor held by ``--dependency=afterany:<job>`` queues while the job runs, and the
chain's next job takes it over instead of being submitted (:mod:`.presubmit`).

It overrides public hooks of Snakemake's executor interface, ``RemoteExecutor.sleep()`` (the
wait between status checks), ``RealExecutor.format_job_exec()`` (the job's command),
``RealExecutor.additional_general_args()`` (the executor a job with Snakemake runs),
``Executor.run_job()`` (the plugin's ``get_submit_command`` is wrapped for the call: a node range,
the request a successor repeats), ``report_job_submission()``, ``cancel_jobs()`` and ``shutdown()``
(a chain's successor is submitted, cancelled), and was
checked against snakemake-executor-plugin-slurm 2.8.0 and snakemake-interface-executor-plugins 9.4
(pyproject pins the plugin; tests/test_slurm_flat.py fails when the upstream classes change what
this relies on).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from pathlib import Path
from typing import Any

import snakemake_executor_plugin_slurm as _upstream
from snakemake_executor_plugin_slurm import Executor as _SlurmExecutor
from snakemake_executor_plugin_slurm import ExecutorSettings, common_settings
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

from snakemake_executor_plugin_slurm_flat.narrowing import Narrowing, full_width
from snakemake_executor_plugin_slurm_flat.presubmit import Successors, without_output

__all__ = ["Executor", "ExecutorSettings", "common_settings", "direct_command", "for_wrap", "with_node_range"]

#: the wait between status checks when the profile sets none
DEFAULT_INTERVAL_S = 2.0


class Executor(_SlurmExecutor):  # type: ignore[misc]
    """The Slurm executor with a flat status-check interval."""

    async def sleep(self) -> None:
        """Wait until the next status check: the flat interval, however long no job finished.
        Jobs of a node range that waited long enough for their full width may then start narrower
        (:mod:`.narrowing`)."""
        for n in self._narrowing().narrow_due():
            self.logger.info(
                f"SLURM job {n.job_id} waited {n.waited_s:.0f}s for its full width; it may now start on "
                f"{n.span} nodes (narrow_after)"
            )
            if os.geteuid() == 0 and not getattr(self, "_warned_root", False):
                self._warned_root = True
                self.logger.warning(
                    f"running as root: Slurm takes a node count that root changes for an operator's limit "
                    f"and starts SLURM job {n.job_id} on the fewest nodes of {n.span}, even when more are "
                    "free. Run the workflow as a regular user, or set narrow_after: 0s (start on what is "
                    "free at once)"
                )
        await asyncio.sleep(self.flat_interval())

    def format_job_exec(self, job: Any) -> str:
        """The job's command: the rule's shell command itself when nothing else is left for
        Snakemake to do in the job (:func:`direct_command`), else Snakemake's (upstream's)."""
        direct = self._direct(job)
        if direct is None:
            return str(super().format_job_exec(job))
        if getattr(self.workflow.executor_settings, "pass_command_as_script", False):
            return direct  # a script through stdin: the shell reads it as written
        return for_wrap(direct)

    def _direct(self, job: Any) -> str | None:
        """The job's command as a shell runs it when Snakemake need not (else None)."""
        array_rules = set(getattr(self, "array_jobs", None) or ())
        direct = direct_command(job, self.workflow, array_rules=array_rules)
        if direct is None:
            return None
        precommand = self.workflow.spawned_job_args_factory.precommand(
            executor_common_settings=self.common_settings
        )
        # what upstream's command sets before Snakemake starts: --envvars, a precommand
        before = [self.get_envvar_declarations(), f"{precommand} &&" if precommand else ""]
        return " ".join([*(b for b in before if b), direct])

    def run_job(self, job: Any) -> None:
        """Submit ``job``: a job with a ``node_range`` resource asks for that range of nodes; one with
        a ``presubmit_key`` takes over its chain's pre-submitted successor if there is one
        (:mod:`.presubmit`), and gets a successor of its own once submitted."""
        key = job.resources.get("presubmit_key")
        if key and self._take_successor(job, str(key)):
            return None
        span = job.resources.get("node_range")
        build = _upstream.get_submit_command
        if span and _narrow_after(job):  # the full width first (:mod:`.narrowing`)
            span = full_width(str(span))

        def submit_command(*args: Any, **kwargs: Any) -> str:
            call = build(*args, **kwargs)
            call = with_node_range(call, str(span)) if span else call
            if key:  # kept for the successor, before sbatch runs (the report may come at once)
                self._requests()[job.jobid] = without_output(call) + set_gres_string(job)
            return call

        _upstream.get_submit_command = submit_command  # run_job looks it up in its module
        try:
            super().run_job(job)
        finally:
            _upstream.get_submit_command = build
        return None

    def _take_successor(self, job: Any, key: str) -> bool:
        command = self._direct(job)
        runtime = job.resources.get("runtime")
        taken = None
        if command is not None:
            taken = self._successors().take(key, command, runtime_min=int(runtime) if runtime else None)
        if taken is None:
            return False
        self.logger.info(
            f"Job {job.jobid} takes over the pre-submitted SLURM job {taken.job_id} (log: {taken.log})."
        )
        self._requests()[job.jobid] = taken.request
        self._report_job_submission_threadsafe(
            SubmittedJobInfo(job, external_jobid=taken.job_id, aux={"slurm_logfile": taken.log})
        )
        return True

    def report_job_submission(self, job_info: Any, register_job: bool = True) -> None:
        """Snakemake learns of a submitted job; a job of a chain then gets its successor."""
        super().report_job_submission(job_info, register_job=register_job)
        span, after = job_info.job.resources.get("node_range"), _narrow_after(job_info.job)
        if span and after and job_info.external_jobid:
            self._narrowing().watch(str(job_info.external_jobid), str(span), after)
        request = self._requests().pop(job_info.job.jobid, None)
        key = job_info.job.resources.get("presubmit_key")
        if request and key and job_info.external_jobid:
            made = self._successors().submit(str(key), after=str(job_info.external_jobid), request=request)
            if made is None:
                self.logger.warning(
                    f"could not pre-submit a successor of SLURM job {job_info.external_jobid}"
                )

    def cancel_jobs(self, active_jobs: list[Any]) -> None:
        self._successors().cancel_all()
        super().cancel_jobs(active_jobs)

    def shutdown(self) -> None:
        self._successors().cancel_all()  # the chains ended: nothing will take them over
        super().shutdown()

    def _successors(self) -> Successors:
        if getattr(self, "_chain_successors", None) is None:
            self._chain_successors = Successors(Path.cwd() / ".snakemake" / "slurm-flat" / "successors")
            left = self._chain_successors.cancel_left_over()
            if left:
                self.logger.info(
                    f"cancelled {len(left)} pre-submitted SLURM job(s) that an earlier run of this "
                    f"workflow left behind: {', '.join(left)}"
                )
        return self._chain_successors

    def _narrowing(self) -> Narrowing:
        if getattr(self, "_chain_narrowing", None) is None:
            self._chain_narrowing = Narrowing()
        return self._chain_narrowing

    def _requests(self) -> dict[Any, str]:
        """Each job's sbatch request (by Snakemake job id), until its successor is submitted."""
        if getattr(self, "_chain_requests", None) is None:
            self._chain_requests: dict[Any, str] = {}
        return self._chain_requests

    def additional_general_args(self) -> str:
        """The job's own Snakemake runs the rule directly (``local``), not through ``slurm-jobstep``'s
        srun and second Snakemake."""
        return "--executor local --jobs 1"

    def flat_interval(self) -> float:
        """``--slurm-flat-init-seconds-before-status-checks``, else 2 s."""
        value = getattr(self.workflow.executor_settings, "init_seconds_before_status_checks", None)
        return float(value or DEFAULT_INTERVAL_S)


def _narrow_after(job: Any) -> float:
    """The job's ``narrow_after_s`` resource: seconds it waits for its full width (0: none)."""
    value = job.resources.get("narrow_after_s")
    return float(value) if value else 0.0


def direct_command(job: Any, workflow: Any, *, array_rules: set[str]) -> str | None:
    """The shell command that runs ``job`` in its batch job without Snakemake, or None when
    Snakemake must run in the job: for anything but a plain shell rule (``run:``, ``script:``,
    wrappers, notebooks), a group job, a software deployment method (conda, apptainer, env
    modules), a shadow folder, a benchmark file, pipes or services, files in storage plugins, or
    a rule submitted as an array job (Snakemake's jobstep dispatches those)."""
    if (
        job.is_group()
        or not job.is_shell
        or job.rule.name in array_rules
        or "all" in array_rules
        or getattr(job.rule, "shadow_depth", None)
        or job.benchmark
        or job.is_pipe
        or job.is_service
        or workflow.deployment_settings.deployment_method
        or any(getattr(f, "is_storage", False) for f in [*job.input, *job.output, *job.log])
    ):
        return None
    files = [str(f) for f in [*job.output, *job.log]]
    folders = sorted({os.path.dirname(f) for f in files} - {""})
    steps = [
        *([f"mkdir -p {shlex.join(folders)}"] if folders else []),
        *([f"rm -rf {shlex.join(str(f) for f in job.output)}"] if job.output else []),
        # Snakemake's shell: bash in strict mode
        "exec bash -c " + shlex.quote("set -euo pipefail; " + str(job.shellcmd)),
    ]
    return " && ".join(steps)


def for_wrap(command: str) -> str:
    """``command`` as upstream puts it into ``sbatch --wrap="..."`` (it escapes only ``"``):
    with ``\\``, ``$`` and backquotes escaped too, the submitting shell leaves it as written."""
    return command.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")


def with_node_range(call: str, span: str) -> str:
    """The plugin's ``sbatch`` call asking for ``span`` whole nodes (``MIN-MAX``) in place of the
    whole numbers it set (``--nodes``, ``--ntasks``)."""
    if not re.fullmatch(r"\d+-\d+", span):
        raise ValueError(f"node_range must be MIN-MAX, e.g. 1-2, got {span!r}")
    call = re.sub(r" --(?:nodes|ntasks)=\d+(?=\s|$)", "", call)
    return f"{call} --nodes={span} --exclusive"
