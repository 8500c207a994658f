"""The slurm-flat executor against the upstream classes it builds on, without Slurm: a change
upstream to what it relies on fails here, not only in the Slurm end-to-end tests."""

from __future__ import annotations

import asyncio
import inspect
import os
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
    from snakemake_executor_plugin_slurm_flat.narrowing import Narrowing

    narrowing, said = Narrowing(run=_Slurm(), clock=lambda: 0.0), []
    narrowing.watch("901", "1-2", 0)
    fake._narrowing = lambda: narrowing
    fake.logger = SimpleNamespace(info=said.append, warning=lambda m: said.append("WARNING " + m))
    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(Executor.sleep(fake), timeout=10))  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 5
    # between status checks, jobs that waited long enough for their full width are let narrower
    assert (
        said[0] == "SLURM job 901 waited 0s for its full width; it may now start on 1-2 nodes (narrow_after)"
    )
    # root's change is an operator's limit: Slurm then starts the job on the fewest nodes (said once)
    assert [m.startswith("WARNING running as root") for m in said[1:]] == (
        [True] if os.geteuid() == 0 else []
    )
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


def test_a_successor_runs_its_ticket_once_written_and_else_gives_up(tmp_path: Path) -> None:
    """#30 item 5: the successor's batch script waits for the ticket (a whole file: it is renamed
    into place) and runs it; with none, it exits after its wait."""
    from snakemake_executor_plugin_slurm_flat.presubmit import waiter_script

    ticket = tmp_path / "after-7.sh"
    waiter = subprocess.Popen(
        ["bash", "-c", waiter_script(ticket, wait_s=30)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    (tmp_path / "t.tmp").write_text(f"echo ran in $(pwd) > {tmp_path / 'out'}\n")
    (tmp_path / "t.tmp").rename(ticket)
    assert waiter.wait(timeout=20) == 0
    assert (tmp_path / "out").read_text().startswith("ran in")
    t0 = time.monotonic()
    alone = subprocess.run(
        ["bash", "-c", waiter_script(tmp_path / "never.sh", wait_s=1)], capture_output=True, text=True
    )
    assert alone.returncode == 0 and "no job took this pre-submitted successor over" in alone.stdout
    assert time.monotonic() - t0 < 15


def test_a_successor_claimed_as_its_wait_ends_waits_for_the_ticket_that_is_coming(tmp_path: Path) -> None:
    """The executor claims a started successor just before it would give up: the waiter yields to
    the claim and runs the ticket written after its own wait ended; and a waiter that gave up
    first makes the executor's claim fail, so the job is submitted anew instead."""
    from snakemake_executor_plugin_slurm_flat.presubmit import Successors, claim_of, waiter_script

    ticket = tmp_path / "after-7.sh"
    claim_of(ticket).mkdir()  # the executor's claim
    waiter = subprocess.Popen(
        ["bash", "-c", waiter_script(ticket, wait_s=1)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)  # past the waiter's own wait
    (tmp_path / "t.tmp").write_text(f"echo late > {tmp_path / 'out'}\n")
    (tmp_path / "t.tmp").rename(ticket)
    assert waiter.wait(timeout=30) == 0 and (tmp_path / "out").read_text() == "late\n"

    slurm = _Slurm(state="RUNNING")
    successors = Successors(tmp_path / "s", run=slurm)
    made = successors.submit("k", after="900", request="sbatch")
    assert made is not None
    gave_up = subprocess.run(
        ["bash", "-c", waiter_script(made.ticket, wait_s=0)], capture_output=True, text=True
    )
    assert "no job took this pre-submitted successor over" in gave_up.stdout
    assert successors.take("k", "echo next", runtime_min=None) is None  # too late: a fresh job
    assert slurm.calls[-1] == ["scancel", "901"] and not made.ticket.exists()


def test_a_killed_snakemakes_successors_are_cancelled_by_the_next_one(tmp_path: Path) -> None:
    """Each pending successor is recorded until taken or cancelled; a Snakemake that finds records
    left by an earlier one (killed: it cancelled nothing) cancels those jobs before submitting."""
    from snakemake_executor_plugin_slurm_flat.presubmit import Successors

    slurm = _Slurm()
    first = Successors(tmp_path, run=slurm)
    first.submit("a", after="900", request="sbatch")  # 901, taken below: runs its segment
    first.submit("b", after="800", request="sbatch")  # 902, left pending when Snakemake is killed
    assert first.take("a", "echo next", runtime_min=None) is not None
    again = Successors(tmp_path, run=slurm)
    assert again.cancel_left_over() == ["902"] and slurm.calls[-1] == ["scancel", "902"]
    assert again.cancel_left_over() == [] and not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("3:00", 3), ("15:00", 15), ("1:00:00", 60), ("1-00:00:00", 1440), ("2:30", 3), ("UNLIMITED", None)],
)
def test_squeue_time_limits_are_read_in_whole_minutes(text: str, minutes: int | None) -> None:
    from snakemake_executor_plugin_slurm_flat.presubmit import limit_minutes

    assert limit_minutes(text) == minutes


class _Slurm:
    """A fake of sbatch, squeue, scontrol and scancel: what was called, and a successor's state."""

    def __init__(self, state: str = "PENDING", limit: str = "3:00", scontrol_ok: bool = True) -> None:
        self.calls: list[object] = []
        self.state, self.limit, self.scontrol_ok = state, limit, scontrol_ok
        self.next_id = 901

    def __call__(self, argv: object, **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if isinstance(argv, str):  # sbatch, through the shell: 901, 902, ...
            self.next_id += 1
            return subprocess.CompletedProcess(argv, 0, f"{self.next_id - 1}\n", "")
        if argv[0] == "squeue":  # type: ignore[index]
            return subprocess.CompletedProcess(argv, 0, f"{self.state}|{self.limit}\n", "")
        code = 0 if argv[0] != "scontrol" or self.scontrol_ok else 1  # type: ignore[index]
        return subprocess.CompletedProcess(argv, code, "", "")


def test_a_successor_is_submitted_held_by_the_job_and_taken_over_with_the_next_command(
    tmp_path: Path,
) -> None:
    from snakemake_executor_plugin_slurm_flat.presubmit import Successors, without_output

    slurm = _Slurm()
    successors = Successors(tmp_path, run=slurm)
    request = without_output("sbatch --parsable --job-name u --output '/l/%j.log' -t 3 --ntasks=1")
    assert request == "sbatch --parsable --job-name u -t 3 --ntasks=1"
    made = successors.submit("runs/e/r", after="900", request=request)
    assert made is not None and made.job_id == "901" and successors.pending == {"runs/e/r": made}
    call = str(slurm.calls[0])
    assert call.startswith(request + " --dependency=afterany:900 --kill-on-invalid-dep=yes --output ")
    assert str(tmp_path / "after-900.sh") in call and "--wrap=" in call
    taken = successors.take("runs/e/r", "echo next", runtime_min=3)
    assert taken == made and made.ticket.read_text() == "echo next\n" and not successors.pending
    assert successors.take("runs/e/r", "echo next", runtime_min=3) is None  # taken once
    assert not [c for c in slurm.calls if isinstance(c, list) and c[0] in ("scontrol", "scancel")]


@pytest.mark.parametrize(
    ("slurm", "runtime", "taken", "after"),
    [
        (_Slurm(limit="14:00"), 10, True, ["scontrol", "update", "JobId=901", "TimeLimit=10"]),  # lowered
        (_Slurm(limit="3:00"), 14, False, ["scancel", "901"]),  # the job needs more: a fresh one
        (_Slurm(limit="14:00", scontrol_ok=False), 10, False, ["scancel", "901"]),
        (_Slurm(state="COMPLETED"), 3, False, ["scancel", "901"]),  # it gave up waiting
        (_Slurm(state="RUNNING"), 3, True, None),  # started already, waiting for its ticket
    ],
)
def test_a_successor_is_taken_only_while_it_waits_and_asked_for_enough_time(
    tmp_path: Path, slurm: _Slurm, runtime: int, taken: bool, after: list[str] | None
) -> None:
    from snakemake_executor_plugin_slurm_flat.presubmit import Successors

    successors = Successors(tmp_path, run=slurm)
    successors.submit("k", after="900", request="sbatch")
    got = successors.take("k", "echo next", runtime_min=runtime)
    assert (got is not None) == taken and (tmp_path / "after-900.sh").exists() == taken
    if after:
        assert slurm.calls[-1] == after
    successors.submit("k", after="902", request="sbatch")
    successors.cancel_all()
    assert slurm.calls[-1] == ["scancel", "902"] and not successors.pending
    assert not list(tmp_path.glob("*.sh"))  # the tickets go when the workflow ends


def test_run_job_takes_the_chains_successor_over_and_presubmits_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job with a presubmit_key: the first is submitted (upstream's run_job) and, once reported,
    gets a successor held by it; the next job of the chain takes that successor over (no sbatch),
    is reported with its id, and gets a successor of its own. A job without a key gets none."""
    import snakemake_executor_plugin_slurm as upstream

    from snakemake_executor_plugin_slurm_flat.presubmit import Successors

    slurm, reported = _Slurm(), []
    executor = Executor.__new__(Executor)
    executor._chain_successors = Successors(tmp_path, run=slurm)
    executor.logger = SimpleNamespace(info=lambda *_: None, warning=lambda *_: None)  # type: ignore[assignment]
    monkeypatch.setattr(executor, "_direct", lambda job: f"run {job.jobid}", raising=False)
    monkeypatch.setattr(executor, "_report_job_submission_threadsafe", executor.report_job_submission)
    monkeypatch.setattr(
        SlurmExecutor, "report_job_submission", lambda self, info, register_job=True: reported.append(info)
    )
    monkeypatch.setattr(upstream, "get_submit_command", lambda job, params, **_: "sbatch --output 'l' -t 3")

    def fake_run_job(self: Executor, job: SimpleNamespace) -> None:  # upstream: sbatch, then report
        upstream.get_submit_command(job, {})
        from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

        self._report_job_submission_threadsafe(SubmittedJobInfo(job, external_jobid="900"))

    monkeypatch.setattr(SlurmExecutor, "run_job", fake_run_job)
    monkeypatch.setattr("snakemake_executor_plugin_slurm_flat.set_gres_string", lambda job: "")
    job = lambda n, **r: SimpleNamespace(jobid=n, resources=_Resources(runtime=3, **r))  # noqa: E731
    executor.run_job(job(1, presubmit_key="runs/e/r"))
    assert [i.external_jobid for i in reported] == ["900"]
    assert str(slurm.calls[0]).startswith("sbatch -t 3 --dependency=afterany:900 ")  # the successor, 901
    executor.run_job(job(2, presubmit_key="runs/e/r"))
    assert [i.external_jobid for i in reported] == ["900", "901"]  # taken over: no new sbatch for it
    assert (tmp_path / "after-900.sh").read_text() == "run 2\n"
    assert "--dependency=afterany:901 " in str(slurm.calls[-1])  # its own successor
    before = len(slurm.calls)
    executor.run_job(job(3))
    assert len(slurm.calls) == before and reported[-1].external_jobid == "900"
    monkeypatch.setattr(SlurmExecutor, "cancel_jobs", lambda self, active: None)
    executor.cancel_jobs([])  # interrupted: the successor no job will take over goes too
    assert slurm.calls[-1] == ["scancel", "902"] and not executor._successors().pending


def test_a_watched_job_gets_its_range_once_it_waited_and_only_while_pending() -> None:
    """#30: a job of a node range waits ``narrow_after_s`` for its full width; then one
    ``scontrol update NumNodes=MIN-MAX`` (Slurm refuses it for a job that started: that job is
    forgotten, not narrowed)."""
    from snakemake_executor_plugin_slurm_flat.narrowing import Narrowed, Narrowing, full_width

    assert full_width("1-2") == "2-2" and full_width("2-8") == "8-8"
    now = [100.0]
    slurm = _Slurm()
    narrowing = Narrowing(run=slurm, clock=lambda: now[0])
    narrowing.watch("901", "1-2", 90)
    narrowing.watch("902", "1-2", 30)
    now[0] = 129.0
    assert narrowing.narrow_due() == [] and slurm.calls == []
    now[0] = 131.0
    assert narrowing.narrow_due() == [Narrowed("902", "1-2", 31.0)]
    assert slurm.calls == [["scontrol", "update", "JobId=902", "NumNodes=1-2"]]
    slurm.scontrol_ok = False  # 901 started meanwhile: "Job is no longer pending execution"
    now[0] = 200.0
    assert narrowing.narrow_due() == [] and narrowing.watched == []
    assert narrowing.narrow_due() == [] and len(slurm.calls) == 2  # tried once


def test_run_job_submits_a_waiting_range_at_full_width_and_watches_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``node_range`` with ``narrow_after_s``: sbatch asks for the largest count, and the job is
    watched from its report; a taken-over successor is watched from its take-over (the same
    report); ``narrow_after_s`` 0 or unset submits the range at once, unwatched."""
    import snakemake_executor_plugin_slurm as upstream
    from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

    from snakemake_executor_plugin_slurm_flat.narrowing import Narrowing

    calls: list[str] = []
    ids = iter(["900", "901", "902"])

    def fake_run_job(self: Executor, job: SimpleNamespace) -> None:
        calls.append(upstream.get_submit_command(job, {}))
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=next(ids)))

    monkeypatch.setattr(SlurmExecutor, "run_job", fake_run_job)
    monkeypatch.setattr(SlurmExecutor, "report_job_submission", lambda self, info, register_job=True: None)
    monkeypatch.setattr(upstream, "get_submit_command", lambda job, params, **_: "sbatch --ntasks=1 -t 5")
    executor = Executor.__new__(Executor)
    executor._chain_narrowing = Narrowing(run=_Slurm(), clock=lambda: 0.0)
    job = lambda n, **r: SimpleNamespace(jobid=n, resources=_Resources(**r))  # noqa: E731
    executor.run_job(job(1, node_range="1-2", narrow_after_s=90))
    executor.run_job(job(2, node_range="1-2", narrow_after_s=0))
    executor.run_job(job(3, node_range="1-2"))
    assert calls == [
        "sbatch -t 5 --nodes=2-2 --exclusive",
        "sbatch -t 5 --nodes=1-2 --exclusive",
        "sbatch -t 5 --nodes=1-2 --exclusive",
    ]
    assert executor._narrowing().watched == ["900"]
