"""The slurm-flat executor against the upstream classes it builds on, without Slurm: a change
upstream to what it relies on fails here, not only in the Slurm end-to-end tests."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT
from snakemake_executor_plugin_slurm import Executor as SlurmExecutor
from snakemake_interface_executor_plugins.executors.real import RealExecutor
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

from snakemake_executor_plugin_slurm_flat import Executor, direct_command, for_wrap, with_node_range


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


def _job(**overrides: object) -> SimpleNamespace:
    job = SimpleNamespace(
        is_group=lambda: False,
        is_shell=True,
        rule=SimpleNamespace(name="segment", shadow_depth=None),
        benchmark=None,
        is_pipe=False,
        is_service=False,
        input=[],
        output=["runs/e/r/status/seg-0001.json"],
        log=["runs/e/r/logs/seg-0001.log"],
        shellcmd='X="$(echo a b)" exec sh -c \'echo "$X" $0 `echo c`\' arg > runs/e/r/logs/seg-0001.log 2>&1',
    )
    for key, value in overrides.items():
        setattr(job, key, value)
    return job


_WORKFLOW = SimpleNamespace(deployment_settings=SimpleNamespace(deployment_method=set()))


def test_a_plain_shell_rule_runs_without_snakemake_in_the_job(tmp_path: Path) -> None:
    """#31 item 2: the batch job makes the folders, removes the old output and runs the rule's
    command in bash's strict mode; sent through upstream's ``--wrap="..."`` it arrives as written."""
    command = direct_command(_job(), _WORKFLOW, array_rules=set())
    assert command is not None and "snakemake" not in command
    status = tmp_path / "runs/e/r/status/seg-0001.json"
    status.parent.mkdir(parents=True)
    status.write_text("old")
    # what upstream does with the command: escape ", wrap it, and hand it to a shell (sbatch's)
    wrapped = for_wrap(command).replace('"', '\\"')
    submitted = subprocess.run(
        ["sh", "-c", f'printf %s "{wrapped}"'], capture_output=True, text=True, check=True
    ).stdout
    assert submitted == command
    done = subprocess.run(["sh", "-c", submitted], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not status.exists()  # the old output is gone, as Snakemake's job.prepare() does
    assert (tmp_path / "runs/e/r/logs/seg-0001.log").read_text() == "a b arg c\n"
    failing = _job(shellcmd="false | cat")  # strict mode: a failed pipe fails the job
    run = subprocess.run(
        ["sh", "-c", direct_command(failing, _WORKFLOW, array_rules=set()) or ""], cwd=tmp_path
    )
    assert run.returncode != 0


@pytest.mark.parametrize(
    "change",
    [
        {"is_group": lambda: True},
        {"is_shell": False},
        {"rule": SimpleNamespace(name="segment", shadow_depth="minimal")},
        {"benchmark": "bench.tsv"},
        {"is_pipe": True},
        {"is_service": True},
        {"output": [SimpleNamespace(is_storage=True)]},
        {"array": {"segment"}},
        {"array": {"all"}},
        {"deployment": {"conda"}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_job_that_needs_snakemake_keeps_it(change: dict[str, object]) -> None:
    array = change.pop("array", set())
    deployment = change.pop("deployment", set())
    workflow = SimpleNamespace(deployment_settings=SimpleNamespace(deployment_method=deployment))
    assert direct_command(_job(**change), workflow, array_rules=array) is None  # type: ignore[arg-type]
    assert direct_command(_job(), _WORKFLOW, array_rules={"other"}) is not None


def test_upstream_builds_the_jobs_command_through_the_public_hook() -> None:
    """The Slurm plugin submits what ``format_job_exec`` returns (wrapped, or as a script), for a
    single job as for arrays; slurm-flat overrides that hook."""
    source = inspect.getsource(SlurmExecutor.run_job)
    assert "exec_job = self.format_job_exec(job)" in source and "--wrap=" in source
    assert "exec_job.replace('\"', '\\\\\"')" in source  # upstream escapes only the double quotes
    assert (
        "format_job_exec" not in vars(SlurmExecutor)
        and Executor.format_job_exec is not RealExecutor.format_job_exec
    )


class _Resources(dict):  # type: ignore[type-arg]
    """Snakemake's job resources: a mapping read by ``get`` and by attribute."""

    def __getattr__(self, name: str) -> object:
        return self.get(name)


def _submit_call(resources: dict[str, object]) -> str:
    """What the upstream plugin's ``get_submit_command`` makes of a job with ``resources``."""
    import snakemake_executor_plugin_slurm as upstream

    params = {
        "run_uuid": "u",
        "slurm_logfile": "log",
        "comment_str": "c",
        "account": "",
        "partition": "-p pair",
        "workdir": "/w",
    }
    job = SimpleNamespace(resources=_Resources(resources), threads=1)
    return str(upstream.get_submit_command(job, params))


def test_a_node_range_replaces_the_whole_numbers_upstream_submits() -> None:
    """#30: ``node_range`` ``1-2`` asks for 1 to 2 whole nodes; the plugin's ``--ntasks`` (and a
    ``--nodes``, were there one) go, everything else stays."""
    plain = _submit_call({"runtime": 15, "mem_mb": 4000, "tasks_per_gpu": 0, "node_range": "1-2"})
    assert " --ntasks=1" in plain and "--nodes" not in plain  # what upstream asks for by itself
    ranged = with_node_range(plain, "1-2")
    assert ranged == plain.replace(" --ntasks=1", "") + " --nodes=1-2 --exclusive"
    fixed = with_node_range(_submit_call({"runtime": 15, "nodes": 2, "tasks": 2, "mpi": "srun"}), "1-3")
    assert (
        " --nodes=2" not in fixed
        and " --ntasks=2" not in fixed
        and fixed.endswith(" --nodes=1-3 --exclusive")
    )
    with pytest.raises(ValueError, match="MIN-MAX"):
        with_node_range(plain, "2")


def test_run_job_asks_upstream_for_the_call_through_a_module_global(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's ``run_job`` builds the sbatch call with its module's ``get_submit_command``;
    slurm-flat's ``run_job`` wraps that function for a job with a ``node_range`` (and only for the
    call), so the range reaches sbatch; other jobs are untouched."""
    import snakemake_executor_plugin_slurm as upstream

    assert "call = get_submit_command(" in inspect.getsource(SlurmExecutor.run_job)
    assert upstream.get_submit_command.__module__ == "snakemake_executor_plugin_slurm.submit_string"
    original, calls = upstream.get_submit_command, []

    def fake_run_job(self: object, job: SimpleNamespace) -> None:  # what upstream does with it
        calls.append(upstream.get_submit_command(job, {}))

    monkeypatch.setattr(SlurmExecutor, "run_job", fake_run_job)
    monkeypatch.setattr(upstream, "get_submit_command", lambda job, params, **_: "sbatch --ntasks=1 -t 5")
    faked = upstream.get_submit_command
    executor = Executor.__new__(Executor)  # no Snakemake behind it: run_job only
    executor.run_job(SimpleNamespace(resources=_Resources(node_range="1-2")))
    executor.run_job(SimpleNamespace(resources=_Resources()))
    assert calls == ["sbatch -t 5 --nodes=1-2 --exclusive", "sbatch --ntasks=1 -t 5"]
    assert upstream.get_submit_command is faked is not original  # put back after the call
