"""Config checks: every bad input gets its exact message (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from batcher.errors import ConfigError
from batcher.workflow.experiments import load_experiments

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())

GOOD = """\
experiments:
  a:
    script: examples/train.py
    length: 3
"""


def _load(text: str):
    return load_experiments(yaml.safe_load(text), schema=SCHEMA, source=text, base_dir=ROOT)


def test_good_config_and_defaults() -> None:
    (exp,) = _load(GOOD).values()
    assert (exp.length_arg, exp.cpus, exp.gpus, exp.policy) == ("epochs", 1, 0, None)
    assert exp.command_args() == ["--epochs", "3"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + "    lenght: 4\n",
            "config.yaml line 5: unknown key 'experiments.a.lenght' (allowed here: args, length",
        ),
        (GOOD + "epochs: 3\n", "config.yaml line 5: unknown key 'epochs' (allowed here: experiments"),
        (
            GOOD.replace("length: 3", "length: -2"),
            "config.yaml line 4: experiments.a.length: -2 is less than the minimum of 1",
        ),
        (GOOD.replace("length: 3", "length: ten"), "experiments.a.length: 'ten' is not of type 'integer'"),
        (
            GOOD + "    resources: {gpus: -1}\n",
            "experiments.a.resources.gpus: -1 is less than the minimum of 0",
        ),
        (
            GOOD.replace("  a:", "  ../evil:"),
            "experiment '../evil': the name must start with a letter or digit",
        ),
        (GOOD.replace("  a:", "  x/y:"), "no '/', no '..'"),
        (GOOD.replace("  a:", "  a..b:"), "experiment 'a..b'"),
        (GOOD + "    policy: sometimes\n", "experiment 'a': unknown policy 'sometimes'"),
        (GOOD + "    policy: no_such_mod:f\n", "cannot import module 'no_such_mod'"),
        (GOOD + "policy: fixed:abc\n", "cannot read 'abc'"),
        (
            GOOD.replace("examples/train.py", "examples/nope.py"),
            "train script 'examples/nope.py' does not exist",
        ),
        (
            GOOD + "    resources: {nodes: 2-1}\n",
            "resources.nodes must be a number of nodes or a range MIN-MAX",
        ),
        (GOOD + "    resources: {nodes: 0-2}\n", "with 1 <= MIN <= MAX"),
        (GOOD + "    resources: {nodes: two}\n", "experiments.a.resources.nodes: 'two' does not match"),
        (GOOD + "presubmit: maybe\n", "presubmit: 'maybe' does not match"),
        ("experiments: {}\n", "experiments: {} should be non-empty"),
        ("experiments:\n  a: {length: 3}\n", "'script' is a required property"),
    ],
)
def test_bad_configs(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(text)
    assert message in str(info.value)


def test_duplicate_experiment_names_are_refused() -> None:
    from batcher.workflow.experiments import read_config_text

    with pytest.raises(ConfigError, match="line 5: experiment 'a' is defined twice"):
        read_config_text(GOOD + "  a:\n    script: x\n    length: 1\n")


def test_run_id_ignores_length_but_not_arguments() -> None:
    a = _load(GOOD + "    args: {lr: 0.1}\n")["a"]
    longer = _load(GOOD.replace("length: 3", "length: 30") + "    args: {lr: 0.1}\n")["a"]
    other = _load(GOOD + "    args: {lr: 0.2}\n")["a"]
    assert a.run_id == longer.run_id != other.run_id


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (2, (2, None, False, "2")),
        ("1-2", (2, 1, True, "1-2")),
        (" 2 - 4 ", (4, 2, True, "2-4")),
        ("2-2", (2, None, False, "2")),
    ],
)
def test_nodes_is_a_count_or_a_range(nodes: object, expected: tuple[object, ...]) -> None:
    """#30: ``nodes: "1-2"`` is an elastic width (each segment runs on 1 or 2 nodes); a range of
    one value is that count. ``ranks`` is the most a segment runs."""
    exp = _load(GOOD + f"    resources: {{nodes: {nodes!r}, tasks: 2}}\n".replace("'", '"'))["a"]
    assert (exp.nodes, exp.min_nodes, exp.elastic, exp.nodes_spec) == expected
    assert exp.ranks == 2 * exp.nodes
