"""The project's own checks, run as tests so that CI runs them: ruff, mypy --strict, snakefmt, snakemake --lint."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, python_env

PY_PATHS = [
    "batcher",
    "tests",
    "examples",
    "workflow/scripts",
    "benchmarks",
    "snakemake_executor_plugin_slurm_flat",
]


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-m", "ruff", "check", *PY_PATHS],
        [sys.executable, "-m", "ruff", "format", "--check", *PY_PATHS],
        [sys.executable, "-m", "mypy"],
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
        [sys.executable, "-m", "snakemake", "--lint", "--profile", "profiles/local"],
    ],
    ids=["ruff", "ruff-format", "mypy", "snakefmt", "snakemake-lint"],
)
def test_lint(argv: list[str]) -> None:
    argv = [a for a in argv if a != "benchmarks" or (ROOT / "benchmarks").exists()]
    done = subprocess.run(argv, cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
