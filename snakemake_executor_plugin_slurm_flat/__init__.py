"""Snakemake's Slurm executor, polling job status on a flat, short cadence (executor ``slurm-flat``).

The stock plugin (snakemake-executor-plugin-slurm 2.x) waits 10 s longer after every status
check that finds no finished job, up to 180 s, and only resets after a check that finds one.
A chain of 15-minute segments therefore waits on average over a minute between a job's end and
the next submission (see README "Performance"). This executor is the same plugin with one
change: it waits ``--slurm-flat-init-seconds-before-status-checks`` between status checks,
always. One status query covers all jobs of the run, so a 2 s cadence costs Slurm one squeue
call every 2 s.

A second change cuts one Snakemake start from every job. Upstream, the batch job runs Snakemake
with the ``slurm-jobstep`` executor, which starts ``srun`` and, inside that step, Snakemake once
more to run the rule (about 3 s per job on the test cluster, and a second parse of the Snakefile).
Here the batch job runs the rule with Snakemake's ``local`` executor (what upstream's inner
Snakemake runs), so the rule's shell command starts in the batch job itself. The workflow's
segment rule starts its training under ``srun`` (batcher.workflow.launch.uses_srun), so the job's
stop signal, which Slurm sends to job steps, still reaches it.

It overrides two public hooks of Snakemake's executor interface, ``RemoteExecutor.sleep()`` (the
wait between status checks) and ``RealExecutor.additional_general_args()`` (the executor the
job runs), and was checked against snakemake-executor-plugin-slurm 2.8.0 and
snakemake-interface-executor-plugins 9.4 (pyproject pins the plugin; tests/test_slurm_flat.py
fails when the upstream classes change what this relies on).
"""

from __future__ import annotations

import asyncio

from snakemake_executor_plugin_slurm import Executor as _SlurmExecutor
from snakemake_executor_plugin_slurm import ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

#: the wait between status checks when the profile sets none
DEFAULT_INTERVAL_S = 2.0


class Executor(_SlurmExecutor):  # type: ignore[misc]
    """The Slurm executor with a flat status-check interval."""

    async def sleep(self) -> None:
        """Wait until the next status check: the flat interval, however long no job finished."""
        await asyncio.sleep(self.flat_interval())

    def additional_general_args(self) -> str:
        """The job's own Snakemake runs the rule directly (``local``), not through ``slurm-jobstep``'s
        srun and second Snakemake."""
        return "--executor local --jobs 1"

    def flat_interval(self) -> float:
        """``--slurm-flat-init-seconds-before-status-checks``, else 2 s."""
        value = getattr(self.workflow.executor_settings, "init_seconds_before_status_checks", None)
        return float(value or DEFAULT_INTERVAL_S)
