"""A segment's Slurm resources and shell command, without Snakemake or Slurm."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from batcher.errors import ConfigError
from batcher.workflow.experiments import Experiment, load_experiments
from batcher.workflow.launch import (
    constraint,
    job_minutes,
    segment_command,
    slurm_extra,
    srun_tasks,
    stop_signal,
    stop_signals,
    task_resources,
    threads,
    uses_srun,
)


def _exp(**resources: int | str) -> Experiment:
    config = {
        "policy": "das5",
        "experiments": {
            "e": {"script": "train.py", "args": {"lr": 0.1}, "length": 3, "resources": resources}
        },
    }
    return load_experiments(config)["e"]


WEDNESDAY_10 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)  # 10:00 in Amsterdam


def _command(exp: Experiment, settings: dict, minutes: int = 14) -> str:
    return segment_command(
        exp,
        segment=3,
        status_file="runs/e/x/status/seg-0003.json",
        run_dir="runs/e/x",
        settings=settings,
        python="/venv/bin/python",
        minutes=minutes,
        threads=threads(exp, settings),
    )


def test_job_minutes_follow_the_policy_at_submission() -> None:
    assert job_minutes(_exp(), WEDNESDAY_10) == 14
    no_policy = load_experiments({"experiments": {"e": {"script": "t.py", "length": 1}}})["e"]
    assert job_minutes(no_policy, WEDNESDAY_10) == 24 * 60


def test_stop_signal_lead_is_at_most_a_third_of_the_job() -> None:
    assert stop_signal({}, 14) == "URG@60"
    assert stop_signal({"stop_signal": "SIGUSR1@300"}, 3) == "USR1@60"
    assert stop_signal({"stop_signal": "B:USR1@90"}, 14) == "B:USR1@90"  # to the batch shell
    with pytest.raises(ConfigError, match="stop_signal='URG@soon'"):
        stop_signal({"stop_signal": "URG@soon"}, 14)
    with pytest.raises(ConfigError, match="stop_signal='USR3@60': no signal named SIGUSR3"):
        stop_signal({"stop_signal": "USR3@60"}, 14)


def test_the_profiles_stop_signal_is_one_the_job_stops_on() -> None:
    """#27: stop_signal USR2@60 passed the schema, but the job only stopped on TERM, USR1 and
    URG: Slurm's USR2 killed it without a save."""
    assert stop_signals({"stop_signal": "USR2@60"}) == "SIGTERM,SIGUSR1,SIGURG,SIGUSR2"
    assert stop_signals({"stop_signal": "B:USR2@60"}) == "SIGTERM,SIGUSR1,SIGURG,SIGUSR2"
    assert stop_signals({}) == "SIGTERM,SIGUSR1,SIGURG"


def test_the_gpu_constraint_is_the_plugins_resource_only_for_gpu_jobs() -> None:
    settings = {"gpu_constraint": "TitanX"}
    assert constraint(_exp(gpus=1), settings) == "TitanX" and constraint(_exp(), settings) is None
    assert constraint(_exp(gpus=1), {}) is None
    assert slurm_extra(_exp(gpus=1), settings, 14) == "--signal=URG@60"


@pytest.mark.parametrize("gpus", [0, 1])
def test_slurm_extra_holds_no_option_the_slurm_plugin_refuses(gpus: int) -> None:
    """The plugin refuses a job whose slurm_extra sets what it manages (--constraint, --nodes,
    --time, ...): a GPU job on profiles/das5 was refused at submission that way."""
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    settings = {"gpu_constraint": "TitanX", "min_time": "5m", "stop_signal": "URG@60"}
    extra = slurm_extra(_exp(gpus=gpus), settings, 14)
    assert "--time-min=5" in extra
    validate_slurm_extra(SimpleNamespace(resources=SimpleNamespace(slurm_extra=extra)))


def test_plain_command_sets_the_in_job_environment() -> None:
    cmd = _command(_exp(cpus=3), {"keep": 3, "margin_s": 5})
    env, _, argv = cmd.partition(" exec ")
    assert shlex.split(argv) == ["/venv/bin/python", "train.py", "--lr", "0.1", "--epochs", "3"]
    pairs = dict(item.split("=", 1) for item in shlex.split(env))
    assert pairs["BATCHER_RUN_DIR"] == "runs/e/x" and pairs["BATCHER_SEGMENT"] == "3"
    assert "das5" in pairs["BATCHER_POLICY"] and pairs["BATCHER_SLURM_SIGNAL"] == "URG@60"
    assert (
        pairs["BATCHER_KEEP"] == "3" and pairs["BATCHER_MARGIN_S"] == "5" and pairs["OMP_NUM_THREADS"] == "3"
    )
    assert pairs["BATCHER_LAUNCHED"] == "$(date +%s.%N)"  # the shell's clock as Python starts


def test_tasks_on_one_machine_run_under_torchrun() -> None:
    exp = _exp(tasks=2, cpus=2)
    assert threads(exp, {}) == 4 and not uses_srun(exp, {})
    cmd = _command(exp, {})
    assert " exec /venv/bin/python -m torch.distributed.run --standalone --nproc-per-node=2 train.py" in cmd
    assert "OMP_NUM_THREADS=2 " in cmd  # per rank


def test_srun_launcher_starts_one_task_per_rank_across_nodes() -> None:
    exp = _exp(nodes=2, tasks=2, gpus=2)
    settings = {"launcher": "srun"}
    assert uses_srun(exp, settings) and threads(exp, settings) == 1
    cmd = _command(exp, settings)
    assert "srun --nodes=2 --ntasks=4 --ntasks-per-node=2 --cpus-per-task=1 --kill-on-bad-exit=1" in cmd
    assert "RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS" in cmd and "LOCAL_WORLD_SIZE=2" in cmd
    assert srun_tasks(exp, settings)  # Slurm allocates the ranks as tasks


class _Resources(dict[str, Any]):
    """A job's resources as the Slurm plugin reads them (``.get`` and attributes)."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def _sbatch(exp: Experiment, settings: dict[str, Any]) -> list[str]:
    """The sbatch command that the pinned Slurm plugin builds for a segment of ``exp``, from the
    resources the rule gives it (None is left out, as Snakemake does)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    given = {k: v for k, v in task_resources(exp, settings).items() if v is not None and k != "node_range"}
    gres = {"gres": f"gpu:{exp.gpus}"} if exp.gpus else {}
    job = SimpleNamespace(
        resources=_Resources(given, runtime=14, mem_mb=exp.mem_mb, **gres), threads=threads(exp, settings)
    )
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": ""}
    params["workdir"] = "/w"
    return shlex.split(get_submit_command(job, params) + set_gres_string(job))


@pytest.mark.parametrize(
    ("nodes", "tasks", "gpus", "layout"),
    [
        (2, 2, 0, ["--nodes=2", "--ntasks-per-node=2"]),  # not --ntasks=4: Slurm may place it 3 + 1
        (2, 2, 2, ["--nodes=2", "--ntasks-per-node=2", "--gres=gpu:2"]),
        (2, 1, 1, ["--nodes=2", "--ntasks=2", "--gres=gpu:1"]),  # at least one task on each node
        (1, 2, 2, ["--nodes=1", "--ntasks=2", "--gres=gpu:2"]),
    ],
)
def test_the_slurm_job_is_laid_out_as_its_step(nodes: int, tasks: int, gpus: int, layout: list[str]) -> None:
    """The job asks for the layout the segment's srun starts (tasks ranks on each of nodes nodes),
    and GPUs per node: never --ntasks-per-gpu, which the plugin would otherwise derive from the rank
    count (4 tasks per GPU for 2 nodes x 2 ranks)."""
    exp, settings = _exp(nodes=nodes, tasks=tasks, gpus=gpus, cpus=3), {"launcher": "srun"}
    argv = _sbatch(exp, settings)
    geometry = [a for a in argv if a.startswith(("--nodes", "--ntasks", "--gres", "--cpus"))]
    assert sorted(geometry) == sorted([*layout, "--cpus-per-task=3"]), argv
    srun = shlex.split(_command(exp, settings).partition(" exec ")[2])
    assert f"--ntasks-per-node={tasks}" in srun and f"--nodes={nodes}" in srun


def test_a_single_rank_is_an_ordinary_one_task_job() -> None:
    exp = _exp(gpus=1, cpus=3)
    assert set(task_resources(exp, {"launcher": "srun"}).values()) == {None}
    argv = _sbatch(exp, {"launcher": "srun"})
    geometry = [a for a in argv if a.startswith(("--nodes", "--ntasks", "--gres", "--cpus"))]
    assert geometry == ["--cpus-per-task=3", "--gres=gpu:1"], argv


def test_srun_launcher_runs_a_single_rank_in_a_step_of_its_own() -> None:
    """The stop signal reaches job steps only: the training is one, with the job's CPUs, as a plain
    one-task job (no tasks/mpi resources)."""
    one, settings = _exp(cpus=3), {"launcher": "srun"}
    assert uses_srun(one, settings) and not srun_tasks(one, settings) and threads(one, settings) == 3
    argv = shlex.split(_command(one, settings).partition(" exec ")[2])
    assert argv == [
        "srun", "--nodes=1", "--ntasks=1", "--cpus-per-task=3", "--overlap",
        "/venv/bin/python", "train.py", "--lr", "0.1", "--epochs", "3",
    ]  # fmt: skip


def test_nodes_without_srun_are_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigError, match="asks for 2 nodes, but this profile runs on one machine"):
        uses_srun(_exp(nodes=2), {})


@pytest.mark.parametrize(
    ("value", "env"), [("10m", "10m"), (500, "500 steps"), ("200 steps", "200 steps"), ("off", "off")]
)
def test_save_every_reaches_the_job_as_the_library_reads_it(value: object, env: str) -> None:
    from batcher.ckpt.periodic import SaveEvery

    cmd = _command(_exp(), {"save_every": value})
    pairs = dict(item.split("=", 1) for item in shlex.split(cmd.partition(" exec ")[0]))
    assert pairs["BATCHER_SAVE_EVERY"] == env
    assert SaveEvery.parse(env, what="BATCHER_SAVE_EVERY") == SaveEvery.parse(value)
    assert "BATCHER_SAVE_EVERY" not in _command(_exp(), {})  # the library's default then


def test_a_bad_save_every_is_refused_at_submission() -> None:
    with pytest.raises(ConfigError, match="save_every='sometimes' cannot be read"):
        _command(_exp(), {"save_every": "sometimes"})


@pytest.mark.parametrize(("tasks", "gpus"), [(1, 0), (2, 0), (2, 2)])
def test_an_elastic_width_asks_for_a_range_of_whole_nodes_and_runs_on_all_it_got(
    tasks: int, gpus: int
) -> None:
    """#30: ``nodes: "1-2"``: upstream asks for nothing of the layout (no --nodes, --ntasks or
    --ntasks-per-gpu), slurm-flat adds ``--nodes=1-2 --exclusive`` from ``node_range``; the srun
    runs ``tasks`` ranks on every node of the job (no --nodes, no --ntasks: srun's default is the
    whole allocation), its world size from Slurm."""
    from snakemake_executor_plugin_slurm_flat import with_node_range

    exp, settings = _exp(nodes="1-2", tasks=tasks, gpus=gpus, cpus=3), {"launcher": "srun"}
    resources = task_resources(exp, settings, "slurm-flat")
    assert resources["node_range"] == "1-2" and resources["nodes"] is None and resources["tasks"] is None
    argv = shlex.split(with_node_range(shlex.join(_sbatch(exp, settings)), str(resources["node_range"])))
    geometry = [a for a in argv if a.startswith(("--nodes", "--ntasks", "--gres", "--cpus", "--excl"))]
    gres = [f"--gres=gpu:{gpus}"] if gpus else []
    assert sorted(geometry) == sorted(["--cpus-per-task=3", "--nodes=1-2", "--exclusive", *gres]), argv
    srun = shlex.split(_command(exp, settings).partition(" exec ")[2])
    assert srun[:5] == [
        "srun",
        f"--ntasks-per-node={tasks}",
        "--cpus-per-task=3",
        "--kill-on-bad-exit=1",
        "bash",
    ]
    assert "WORLD_SIZE=$SLURM_NTASKS" in srun[-1]


def test_an_elastic_width_is_refused_where_it_cannot_be_submitted() -> None:
    exp = _exp(nodes="1-2")
    with pytest.raises(ConfigError, match="1-2 nodes, a range, which the stock slurm executor cannot submit"):
        task_resources(exp, {"launcher": "srun"}, "slurm")
    with pytest.raises(ConfigError, match="asks for 1-2 nodes, but this profile runs on one machine"):
        task_resources(exp, {}, "local")


@pytest.mark.parametrize("value", [True, "true", "yes", "on"])
def test_presubmit_names_the_chain_for_slurm_flat(value: object) -> None:
    """#30 item 5: the run folder is the chain whose successor a segment's job may take over."""
    from batcher.workflow.launch import presubmit_key

    assert presubmit_key("runs/e/r1", {"presubmit": value}, "slurm-flat") == "runs/e/r1"
    assert presubmit_key("runs/e/r1", {"presubmit": value}, "dryrun") == "runs/e/r1"


@pytest.mark.parametrize("value", [None, False, "false", "no", "off"])
def test_presubmit_off_asks_for_nothing(value: object) -> None:
    from batcher.workflow.launch import presubmit_key

    settings = {} if value is None else {"presubmit": value}
    assert presubmit_key("runs/e/r1", settings, "slurm") is None


@pytest.mark.parametrize("executor", ["slurm", "local"])
def test_presubmit_is_refused_where_nothing_would_act_on_it(executor: str) -> None:
    from batcher.workflow.launch import presubmit_key

    with pytest.raises(
        ConfigError, match=f"presubmit: true needs executor slurm-flat.*executor '{executor}'"
    ):
        presubmit_key("runs/e/r1", {"presubmit": True}, executor)
