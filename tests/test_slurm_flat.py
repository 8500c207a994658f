"""The slurm-flat executor against the upstream classes it builds on, without Slurm: a change
upstream to what it relies on fails here, not only in the Slurm end-to-end tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from importlib.metadata import version
from types import SimpleNamespace

from conftest import ROOT
from snakemake_executor_plugin_slurm import Executor as SlurmExecutor
from snakemake_interface_executor_plugins.executors.real import RealExecutor
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

from snakemake_executor_plugin_slurm_flat import Executor


def test_the_pinned_upstream_plugin_is_the_one_installed() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"snakemake-executor-plugin-slurm=={version("snakemake-executor-plugin-slurm")}"' in pyproject


def test_upstream_still_waits_through_the_public_sleep_hook() -> None:
    """The interface's status loop waits with ``await self.sleep()``, and the Slurm plugin does
    not replace that hook itself: overriding ``sleep`` is what sets the cadence."""
    assert inspect.iscoroutinefunction(RemoteExecutor.sleep)
    assert "await self.sleep()" in inspect.getsource(RemoteExecutor._wait_for_jobs)
    assert "sleep" not in vars(SlurmExecutor)
    assert Executor.sleep is not RemoteExecutor.sleep and issubclass(Executor, RemoteExecutor)
    # the growth this executor exists to avoid: still there upstream, and still read by sleep()
    assert "next_seconds_between_status_checks + 10" in inspect.getsource(SlurmExecutor)
    assert "next_seconds_between_status_checks" in inspect.getsource(RemoteExecutor.sleep)


def test_sleep_waits_the_flat_interval_however_long_the_grown_one_is() -> None:
    fake = SimpleNamespace(
        workflow=SimpleNamespace(executor_settings=SimpleNamespace(init_seconds_before_status_checks=0.05)),
        next_seconds_between_status_checks=180,  # what the stock plugin would wait now
    )
    fake.flat_interval = lambda: Executor.flat_interval(fake)  # type: ignore[arg-type]
    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(Executor.sleep(fake), timeout=10))  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 5
    unset = SimpleNamespace(workflow=SimpleNamespace(executor_settings=SimpleNamespace()))
    assert Executor.flat_interval(unset) == 2.0  # type: ignore[arg-type]


def test_the_job_runs_the_rule_itself_with_the_local_executor() -> None:
    """Upstream puts ``--executor slurm-jobstep`` (srun + a second Snakemake) into the job's command
    through ``additional_general_args``; slurm-flat puts Snakemake's local executor there."""
    assert "self.additional_general_args()" in inspect.getsource(RealExecutor.format_job_exec)
    assert "--executor slurm-jobstep" in inspect.getsource(SlurmExecutor.additional_general_args)
    assert Executor.additional_general_args(None) == "--executor local --jobs 1"  # type: ignore[arg-type]
    assert "local" in ExecutorPluginRegistry().plugins
