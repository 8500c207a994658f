"""The front door: the README's install command, run as written in a fresh virtualenv, and the
environment the suite itself runs in (tests/run.sh: the declared dependencies and nothing else)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import workflow_copy
from packaging.requirements import Requirement


def readme_commands() -> list[str]:
    """The shell commands of the README's ```bash blocks, in order."""
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a new user's shell with ``venv`` activated: no PYTHONPATH, no test settings."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BATCHER_", "SLURM_"))}
    keep.pop("VIRTUAL_ENV", None)
    path = [p for p in keep.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)]
    return {**keep, "PATH": os.pathsep.join([str(venv / "bin"), *path]), "VIRTUAL_ENV": str(venv)}


@pytest.mark.install
def test_readme_install_command_gives_both_profiles_their_executor(tmp_path: Path) -> None:
    main_job = readme_commands()[0]
    install, _, run = main_job.partition(" && ")
    assert install.startswith("pip install ") and run == "snakemake --profile profiles/local", main_job
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _clean_env(venv)
    done = subprocess.run(
        ["bash", "-c", install], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workdir = workflow_copy(tmp_path / "wf", {"a": {"script": "scripts/train_full.py", "length": 2}})
    for profile in ("local", "das5"):
        plan = subprocess.run(
            ["snakemake", "--profile", f"profiles/{profile}", "-n"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        out = plan.stdout + plan.stderr
        assert plan.returncode == 0, f"profiles/{profile}: {out[-3000:]}"
        assert "segment" in out, out[-3000:]  # the first segment of experiment a is planned


def _requirements(dist: str, extras: frozenset[str], seen: set[str]) -> None:
    """Add ``dist`` and everything it requires (with ``extras``) to ``seen``, by normalized name."""
    name = re.sub(r"[-_.]+", "-", dist).lower()
    key = f"{name}[{','.join(sorted(extras))}]"
    if key in seen:
        return
    seen.update({key, name})
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return  # an unmet optional requirement; pip would have said so if it were needed
    for text in requires:
        req = Requirement(text)
        wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(w) for w in wanted):
            _requirements(req.name, frozenset(req.extras), seen)


@pytest.mark.skipif(
    os.path.realpath(os.environ.get("TORCH_BATCHER_TEST_VENV", "/nonexistent"))
    != os.path.realpath(sys.prefix),
    reason="checks the virtualenv that tests/run.sh builds; run the suite with bash tests/run.sh",
)
def test_suite_runs_against_the_declared_dependencies_only() -> None:
    """An undeclared package must fail the suite on every machine, not only on fresh ones: the
    virtualenv holds the closure of torch-batcher[dev] and nothing else (pip's own tools aside)."""
    assert sys.prefix != sys.base_prefix, "not a virtualenv"
    declared: set[str] = set()
    _requirements("torch-batcher", frozenset({"dev"}), declared)
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()}
    extra = installed - declared - {"pip", "setuptools", "wheel"}
    assert not extra, f"installed but not declared by torch-batcher[dev]: {sorted(extra)}"
