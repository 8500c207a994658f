"""Snakemake's Slurm executor, polling job status on a flat, short cadence (executor ``slurm-flat``).

The stock plugin (snakemake-executor-plugin-slurm 2.x) waits 10 s longer after every status
check that finds no finished job, up to 180 s, and only resets after a check that finds one.
A chain of 15-minute segments therefore waits on average over a minute between a job's end and
the next submission (see README "Performance"). This executor is the same plugin with one
change: the wait never grows past ``--slurm-flat-init-seconds-before-status-checks``. One status
query covers all jobs of the run, so a 2 s cadence costs Slurm one squeue call every 2 s.
"""

from __future__ import annotations

from typing import Any

from snakemake_executor_plugin_slurm import Executor as _SlurmExecutor
from snakemake_executor_plugin_slurm import ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]


class Executor(_SlurmExecutor):  # type: ignore[misc]
    """The Slurm executor with a flat status-check interval."""

    @property
    def next_seconds_between_status_checks(self) -> Any:
        return self._flat_interval()

    @next_seconds_between_status_checks.setter
    def next_seconds_between_status_checks(self, value: Any) -> None:
        self._next_seconds_between_status_checks = value  # kept, but never waited on

    def _flat_interval(self) -> float:
        return float(getattr(self.workflow.executor_settings, "init_seconds_before_status_checks", 2) or 2)
