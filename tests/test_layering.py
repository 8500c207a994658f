"""The layering rule, checked on the import graph so that it cannot erode silently.

- The in-job library (``batcher``, what a train script imports) never imports the workflow side
  (``batcher.workflow``), Snakemake or the executor plugin.
- The workflow side (``batcher.workflow``) and the format owners it reads through stay torch-free,
  so the Snakefile and the ``batcher`` command start in a fraction of a second.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, python_env

PACKAGE = ROOT / "batcher"
WORKFLOW = PACKAGE / "workflow"
FORBIDDEN_IN_JOB = ("batcher.workflow", "snakemake", "snakemake_executor_plugin_slurm_flat")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


IN_JOB = sorted(p for p in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", IN_JOB, ids=lambda p: p.name)
def test_the_in_job_library_never_imports_the_workflow_side(path: Path) -> None:
    bad = sorted(m for m in _imports(path) if m.startswith(FORBIDDEN_IN_JOB))
    assert not bad, f"{_module(path)} imports {bad}: the in-job library knows nothing of the workflow"


def test_the_workflow_side_and_the_format_owners_import_no_torch() -> None:
    """Imported in a fresh interpreter: torch must not be among the loaded modules afterwards."""
    modules = [_module(p) for p in sorted(WORKFLOW.glob("*.py")) if p.name != "__main__.py"] + [
        "batcher",
        "batcher.layout",
        "batcher.status",
        "batcher.manifest",
        "batcher.metrics",
        "batcher.policy",
        "batcher.timespec",
        "batcher.errors",
        "batcher.files",
        "batcher.lock",
        "batcher.settings",
    ]
    code = (
        f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=python_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", f"torch was imported by {modules}: {done.stdout[:300]}"


def test_snakemake_rules_and_scripts_import_only_the_workflow_side_and_format_owners() -> None:
    """The rules and scripts reach the run folder through the format owners, not around them."""
    allowed = (
        "batcher.workflow",
        "batcher.layout",
        "batcher.status",
        "batcher.files",
        "batcher.metrics",
        "batcher.errors",
        "batcher.checkpoint",
    )  # publish joins FSDP shards (torch) by design
    sources = [*(ROOT / "workflow" / "rules").glob("*.smk"), *(ROOT / "workflow" / "scripts").glob("*.py")]
    for path in sources:
        text = path.read_text()
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith(("from batcher", "import batcher")):
                module = stripped.split()[1]
                assert module.startswith(allowed), f"{path.name}: {stripped}"


def test_tests_mirror_modules() -> None:
    """Every module has its own test file: batcher/x.py -> tests/test_x.py, batcher/workflow/x.py
    -> tests/test_workflow_x.py (batcher/__init__.py: tests/test_api.py)."""
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    expected = {f"test_{p.stem}.py" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    expected |= {f"test_workflow_{p.stem}.py" for p in WORKFLOW.glob("*.py") if not p.stem.startswith("__")}
    assert not sorted(expected - tests), f"modules without a test file: {sorted(expected - tests)}"
