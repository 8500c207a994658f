"""The experiments in ``config.yaml``: validated with line numbers, and each run's identity.

Pure Python (no torch): the Snakefile and ``batcher status`` import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from batcher.errors import ConfigError, PolicyError
from batcher.limits.policy import Policy, policy_from_spec

__all__ = [
    "SCHEMA",
    "Experiment",
    "experiments_from",
    "load_experiments",
    "read_config_text",
    "validate_config",
]

#: the config schema, relative to the workflow folder (where the Snakefile is)
SCHEMA = Path("workflow/schemas/config.schema.yaml")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Experiment:
    """One experiment of ``config.yaml`` with its defaults filled in."""

    name: str
    script: str
    args: Mapping[str, Any]
    length: int
    length_arg: str = "epochs"
    cpus: int = 1  # per process
    mem_mb: int = 2000
    gpus: int = 0
    tasks: int = 1  # processes per node (ranks), started with torchrun or srun when more than one
    nodes: int = 1  # the most nodes a segment runs on
    min_nodes: int | None = None  # elastic width ("1-2"): a segment runs on min_nodes..nodes, as Slurm gives
    policy_spec: Any = None
    policy: Policy | None = field(default=None, compare=False)

    @cached_property
    def run_id(self) -> str:
        """8 hex digits naming this experiment's hyper-parameters (not its length).

        A changed argument gives a new run folder (the old one is kept); a raised length does not.
        """
        ident = {
            "script": self.script,
            "args": dict(sorted(self.args.items())),
            "length_arg": self.length_arg,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def ranks(self) -> int:
        """Processes of one segment (at most, with an elastic width): ``nodes`` x ``tasks``."""
        return self.nodes * self.tasks

    @property
    def elastic(self) -> bool:
        """The number of nodes is a range: each segment runs on the nodes Slurm gave it."""
        return self.min_nodes is not None and self.min_nodes < self.nodes

    @property
    def nodes_spec(self) -> str:
        """sbatch's ``--nodes`` value: ``N``, or ``MIN-MAX`` for an elastic width."""
        return f"{self.min_nodes}-{self.nodes}" if self.elastic else str(self.nodes)

    def command_args(self) -> list[str]:
        """Return the script's command-line arguments, length included."""
        out: list[str] = []
        for key, value in self.args.items():
            flag = f"--{key}"
            if value is True:
                out.append(flag)
            elif value is False or value is None:
                continue
            else:
                out += [flag, str(value)]
        return [*out, f"--{self.length_arg}", str(self.length)]


def _line_of(source: str | None, path: list[Any]) -> int | None:
    if not source:
        return None
    try:
        node = yaml.compose(source)
    except yaml.YAMLError:
        return None
    line = None
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if k.value == str(key):
                line = k.start_mark.line + 1
                node = v
                break
        else:
            break
    return line


def validate_config(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    source: str | None = None,
    filename: str = "config.yaml",
) -> None:
    """Raise :class:`ConfigError` listing every schema violation with its key path and line."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(dict(config)), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            for key in extra:
                line = _line_of(source, [*path, key])
                where = f"{filename}" + (f" line {line}" if line else "")
                allowed = ", ".join(sorted(error.schema.get("properties", {})))
                dotted = ".".join(map(str, [*path, key]))
                problems.append(f"{where}: unknown key {dotted!r} (allowed here: {allowed})")
            continue
        line = _line_of(source, path)
        where = f"{filename}" + (f" line {line}" if line else "")
        dotted = ".".join(map(str, path)) or "(top level)"
        problems.append(f"{where}: {dotted}: {error.message}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def load_experiments(
    config: Mapping[str, Any],
    *,
    schema: Mapping[str, Any] | None = None,
    source: str | None = None,
    filename: str = "config.yaml",
    base_dir: Path | None = None,
) -> dict[str, Experiment]:
    """Return the validated experiments of ``config``; every problem raises :class:`ConfigError`."""
    if schema is not None:
        validate_config(config, schema, source=source, filename=filename)
    experiments = config.get("experiments")
    if not isinstance(experiments, Mapping) or not experiments:
        raise ConfigError(f"{filename}: needs an 'experiments:' mapping with at least one experiment")
    default_policy = config.get("policy")
    out: dict[str, Experiment] = {}
    for name, spec in experiments.items():
        name = str(name)
        line = _line_of(source, ["experiments", name])
        where = f"{filename}" + (f" line {line}" if line else "") + f": experiment {name!r}"
        if not _NAME.match(name) or ".." in name:
            raise ConfigError(
                f"{where}: the name must start with a letter or digit and hold only letters, digits, "
                "'_', '-', '.', '+' (no '/', no '..'): it becomes a folder name"
            )
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: must be a mapping with at least 'script' and 'length'")
        script = spec.get("script")
        if not isinstance(script, str) or not script:
            raise ConfigError(f"{where}: 'script' must name the train script, e.g. examples/train.py")
        if base_dir is not None and not (base_dir / script).is_file():
            raise ConfigError(f"{where}: train script {script!r} does not exist (relative to {base_dir})")
        length = spec.get("length")
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ConfigError(f"{where}: 'length' must be a positive whole number, got {length!r}")
        resources = spec.get("resources") or {}
        policy_spec = spec.get("policy", default_policy)
        try:
            policy = policy_from_spec(policy_spec)
        except PolicyError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        nodes, min_nodes = _nodes(resources.get("nodes", 1), where=f"{where}: resources.nodes")
        out[name] = Experiment(
            name=name,
            script=script,
            args=dict(spec.get("args") or {}),
            length=length,
            length_arg=str(spec.get("length_arg", "epochs")),
            cpus=int(resources.get("cpus", 1)),
            mem_mb=int(resources.get("mem_mb", 2000)),
            gpus=int(resources.get("gpus", 0)),
            tasks=int(resources.get("tasks", 1)),
            nodes=nodes,
            min_nodes=min_nodes,
            policy_spec=policy_spec,
            policy=policy,
        )
    return out


def _nodes(value: Any, *, where: str) -> tuple[int, int | None]:
    """``nodes``: a count, or a range ``"MIN-MAX"`` (elastic width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(value))
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise ConfigError(
            f'{where} must be a number of nodes or a range MIN-MAX with 1 <= MIN <= MAX (e.g. "1-2"), '
            f"got {value!r}"
        )
    low, high = int(m[1]), int(m[2])
    return high, (low if low < high else None)


def experiments_from(
    config: Mapping[str, Any],
    *,
    config_files: list[Path],
    workflow_dir: Path,
    base_dir: Path | None = None,
) -> dict[str, Experiment]:
    """The experiments of a workflow's merged ``config``, validated against its schema; problems
    name the line of the config file that holds the experiments (of ``config_files``, the
    last one with an ``experiments:`` key; a profile's settings file has none)."""
    schema_path = workflow_dir / SCHEMA
    schema = yaml.safe_load(schema_path.read_text()) if schema_path.is_file() else None
    source, filename = None, "config.yaml"
    for path in config_files:
        if path.is_file():
            text = path.read_text()
            if "experiments" in read_config_text(text, str(path)):  # also refuses duplicate keys
                source, filename = text, str(path)
    return load_experiments(config, schema=schema, source=source, filename=filename, base_dir=base_dir)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    filename = "config.yaml"


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            where = f"{loader.filename} line {key_node.start_mark.line + 1}"
            if key_node.start_mark.column == 0:
                raise ConfigError(f"{where}: setting {key!r} is given twice")
            raise ConfigError(
                f"{where}: experiment {key!r} is defined twice"
                if isinstance(key, str)
                else f"{where}: key {key!r} is given twice"
            )
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_config_text(text: str, filename: str = "config.yaml") -> dict[str, Any]:
    """Parse config YAML, refusing duplicate keys (which plain YAML silently merges)."""
    loader = type("_Loader", (_UniqueKeyLoader,), {"filename": filename})
    try:
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{filename} must be a mapping of settings (config.yaml: with an 'experiments:' key)"
        )
    return doc
