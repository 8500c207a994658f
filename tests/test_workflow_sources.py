"""One resolver of the workflow's effective settings: profile, then config.yaml, then --config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, python_env
from helpers import workflow_copy

from batcher.errors import ConfigError
from batcher.workflow.cli import main
from batcher.workflow.sources import profile_settings_files, resolve_config


def _write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_config_yaml_beats_the_profile_and_the_command_line_beats_both(tmp_path: Path) -> None:
    profile = _write(tmp_path / "p" / "settings.yaml", {"policy": "das5", "keep": 2, "launcher": "srun"})
    config = _write(
        tmp_path / "config.yaml", {"policy": "fixed:5m", "keep": 4, "experiments": {"a": {"length": 1}}}
    )
    eff = resolve_config(config_file=config, profile_files=[profile], overrides={"keep": 7})
    assert eff.config == {
        "policy": "fixed:5m",
        "keep": 7,
        "launcher": "srun",
        "experiments": {"a": {"length": 1}},
    }
    assert eff.origin == {
        "policy": str(config),
        "keep": "--config",
        "launcher": str(profile),
        "experiments": str(config),
    }
    assert eff.describe("policy", "margin_s") == f"policy='fixed:5m' ({config}), margin_s: default"


def test_mappings_merge_key_by_key_and_config_yaml_given_as_a_profile_file_counts_once(
    tmp_path: Path,
) -> None:
    config = _write(tmp_path / "config.yaml", {"experiments": {"a": {"length": 1, "args": {"lr": 1}}}})
    eff = resolve_config(
        config_file=config,
        profile_files=[config],
        overrides={"experiments": {"a": {"args": {"lr": 2}}}},
    )
    assert eff.config["experiments"] == {"a": {"length": 1, "args": {"lr": 2}}}


def test_a_profile_folder_names_its_settings_files_and_a_wrong_folder_says_so(tmp_path: Path) -> None:
    assert profile_settings_files(ROOT / "profiles" / "das5") == [Path("profiles/das5/settings.yaml")]
    with pytest.raises(ConfigError, match="is no Snakemake profile"):
        profile_settings_files(tmp_path)
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        resolve_config(config_file=tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no config file at"):
        resolve_config(config_file=tmp_path / "missing.yaml")
    (tmp_path / "twice.yaml").write_text("keep: 2\nmargin_s: 5\nmargin_s: -5\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml line 3: setting 'margin_s' is given twice"):
        resolve_config(config_file=tmp_path / "c.yaml", profile_files=[tmp_path / "twice.yaml"])
    (tmp_path / "empty.yaml").write_text("")
    assert resolve_config(config_file=tmp_path / "empty.yaml").config == {}


def test_snakemake_and_the_cli_use_config_yamls_policy_over_the_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """#27: config.yaml's top-level policy was silently replaced by the profile's settings.yaml,
    while `batcher policy` read config.yaml alone."""
    wd = workflow_copy(tmp_path / "wf", {"g": {"script": "scripts/train_full.py", "length": 1}})
    config = yaml.safe_load((wd / "config.yaml").read_text())
    (wd / "config.yaml").write_text(yaml.safe_dump({**config, "policy": "fixed:5m"}))
    argv = [sys.executable, "-m", "snakemake", "--profile", "profiles/das5", "-n"]
    pinned = "policy_now=2026-11-25T22:00:00+01:00"  # a night: das5 would give 10 h
    done = subprocess.run(
        [*argv, "--config", pinned], cwd=wd, env=python_env(), capture_output=True, text=True
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "runtime=5," in out, out[-3000:]
    monkeypatch.chdir(wd)
    assert main(["policy", "--profile", "profiles/das5", "--at", "2026-11-25T22:00+01:00"]) == 0
    shown = capsys.readouterr()
    assert "time limit  5m 00s" in shown.out
    assert "settings: profile profiles/das5; policy='fixed:5m' (config.yaml)" in shown.err
    (wd / "config.yaml").write_text(yaml.safe_dump(config))  # no policy in config.yaml: the profile's
    assert main(["policy", "--profile", "profiles/das5", "--at", "2026-11-25T22:00+01:00"]) == 0
    shown = capsys.readouterr()
    assert "(profiles/das5/settings.yaml)" in shown.err and "time limit  5m" not in shown.out
    assert main(["policy", "--profile", "profiles/local"]) == 0
    assert "policy='fixed:30s' (profiles/local/settings.yaml)" in capsys.readouterr().err
