"""The workflow's effective settings, from their three sources in one documented order:

1. the profile's settings files (``configfile:`` in ``profiles/<name>/config.v8+.yaml``),
2. ``config.yaml``,
3. ``snakemake --config key=value``,

each later one winning, key by key (mappings are merged key by key, as Snakemake merges configs).
The profile says where jobs run and gives defaults for it; what ``config.yaml`` says was written
for this workflow and wins over them. The Snakefile (``workflow/rules/common.smk``) and the CLI
both ask :func:`resolve_config`, so that ``batcher status`` and ``batcher policy`` use what the jobs use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from batcher.errors import ConfigError
from batcher.workflow.experiments import read_config_text

__all__ = ["EffectiveConfig", "profile_settings_files", "resolve_config"]

#: the profile files Snakemake 8+ reads, the first one found
PROFILE_FILES = ("config.v8+.yaml", "config.yaml")


@dataclass(frozen=True)
class EffectiveConfig:
    """The merged config and, for each top-level key, the source it came from."""

    config: dict[str, Any]
    origin: dict[str, str]

    def describe(self, *keys: str) -> str:
        """``policy=das5 (profiles/das5/settings.yaml), margin_s=15 (default)`` for ``keys``."""
        return ", ".join(
            f"{k}={self.config[k]!r} ({self.origin[k]})" if k in self.config else f"{k}: default"
            for k in keys
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no config file at {path}; run in the workflow folder, or fix the path") from None
    if not text.strip():
        return {}
    doc = yaml.safe_load(text) if path.name in PROFILE_FILES else read_config_text(text, str(path))
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must be a mapping of settings, not a {type(doc).__name__}")
    return doc


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def profile_settings_files(profile: Path) -> list[Path]:
    """The settings files a Snakemake profile folder names (its ``configfile:``), as Snakemake
    reads them: relative to the working directory."""
    for name in PROFILE_FILES:
        path = profile / name
        if path.is_file():
            files = _read(path).get("configfile") or []
            return [Path(f) for f in ([files] if isinstance(files, str) else files)]
    raise ConfigError(
        f"{profile} is no Snakemake profile (no {' or '.join(PROFILE_FILES)} in it); pass "
        "--profile profiles/<name>, e.g. profiles/local or profiles/das5"
    )


def resolve_config(
    *,
    config_file: Path,
    profile_files: Sequence[Path] = (),
    overrides: Mapping[str, Any] | None = None,
) -> EffectiveConfig:
    """Merge the profile's settings files, ``config_file`` and ``overrides`` (``--config``) in
    that order; a profile file that is ``config_file`` itself counts once, as ``config_file``."""
    config: dict[str, Any] = {}
    origin: dict[str, str] = {}
    same = config_file.resolve()
    sources: list[tuple[str, Mapping[str, Any]]] = [
        (str(p), _read(p)) for p in profile_files if p.resolve() != same
    ]
    sources.append((str(config_file), _read(config_file)))
    sources.append(("--config", overrides or {}))
    for label, doc in sources:
        _merge(config, doc)
        origin.update(dict.fromkeys(doc, label))
    return EffectiveConfig(config, origin)
