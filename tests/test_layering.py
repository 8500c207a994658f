"""The layering rules, checked on the import graph so that they cannot erode silently.

- The in-job library (``batcher``, what a train script imports) never imports the workflow side
  (``batcher.workflow``), Snakemake or the executor plugin.
- Its folders are floors, and every import points down (or stays on its floor): ``errors`` and
  ``job_env`` at the bottom, then ``limits``, ``stopping``, ``run``, ``ckpt``, ``api``, and
  the package's ``__init__`` on top.
- The workflow side (``batcher.workflow``, the Snakefile, its rules and scripts) uses only the
  in-job modules of an allow-list: the format owners and the pure helpers, never the loop.
- The workflow side and the format owners it reads through stay torch-free, so the Snakefile
  and the ``batcher`` command start in a fraction of a second.

Relative imports count as the absolute ones they name; imports inside functions count too.
"""

from __future__ import annotations

import ast
import re
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


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports included), relative
    imports resolved against the module's package."""
    found = set()
    package = _module(path).split(".") if path.name == "__init__.py" else _module(path).split(".")[:-1]
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


IN_JOB = sorted(p for p in PACKAGE.rglob("*.py") if WORKFLOW not in p.parents)
FLOORS = ["errors", "job_env", "limits", "stopping", "run", "ckpt", "api", "__init__"]
#: what the workflow side may import of the in-job library: format owners and pure helpers
WORKFLOW_MAY_USE = (
    "batcher.errors",
    "batcher.job_env",
    "batcher.limits.",
    "batcher.run.",
    "batcher.ckpt.manifest",
    "batcher.ckpt.periodic",
    "batcher.stopping.signals",
    "batcher.stopping.slurm",
    "batcher.stopping.margin",
)


def _floor(module: str) -> int:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    return FLOORS.index(name) if name in FLOORS else FLOORS.index("__init__")


def test_every_import_of_the_in_job_library_points_down_a_floor_or_stays_on_it() -> None:
    bad = []
    for path in IN_JOB:
        here = _module(path)
        for target in _imports(path):
            if target.startswith("batcher.") and _floor(target) > _floor(here):
                bad.append(f"{here} -> {target}")
    assert not bad, f"upward imports: {sorted(set(bad))}"


def test_the_layering_checks_see_relative_imports() -> None:
    """The rules above cannot be dodged by writing an import relatively."""
    found = _imports(PACKAGE / "run" / "layout.py", "from ..api import loop\nfrom . import status\n")
    assert {"batcher.api.loop", "batcher.run.status"} <= found
    assert _floor("batcher.api.loop") > _floor("batcher.run.layout")


@pytest.mark.parametrize("path", IN_JOB, ids=lambda p: p.name)
def test_the_in_job_library_never_imports_the_workflow_side(path: Path) -> None:
    bad = sorted(m for m in _imports(path) if m.startswith(FORBIDDEN_IN_JOB))
    assert not bad, f"{_module(path)} imports {bad}: the in-job library knows nothing of the workflow"


def test_the_workflow_side_and_the_format_owners_import_no_torch() -> None:
    """Imported in a fresh interpreter: torch must not be among the loaded modules afterwards."""
    modules = [_module(p) for p in sorted(WORKFLOW.glob("*.py")) if p.name != "__main__.py"] + [
        "batcher",
        "batcher.run.layout",
        "batcher.run.status",
        "batcher.run.summary",
        "batcher.ckpt.manifest",
        "batcher.run.metrics",
        "batcher.limits.policy",
        "batcher.limits.timespec",
        "batcher.errors",
        "batcher.run.atomic_files",
        "batcher.run.lock",
        "batcher.api.settings",
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


def test_the_workflow_side_uses_only_the_allowed_in_job_modules() -> None:
    """batcher.workflow, the Snakefile, its rules and scripts reach the run folder through the
    format owners, never around them, and never through the segment loop."""
    allowed = ("batcher.workflow", *WORKFLOW_MAY_USE, "batcher.ckpt.load_checkpoint")
    # (workflow/scripts/publish.py joins FSDP shards with torch, by design)
    sources = [
        *sorted(WORKFLOW.glob("*.py")),
        ROOT / "Snakefile",
        *(ROOT / "workflow" / "rules").glob("*.smk"),
        *(ROOT / "workflow" / "scripts").glob("*.py"),
    ]
    bad = []
    for path in sources:
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("from batcher", "import batcher", "from .", "from ..")):
                module = stripped.split()[1]
                if module.startswith("."):  # relative, inside batcher/workflow
                    module = (
                        "batcher.workflow" + module[1:]
                        if not module.startswith("..")
                        else "batcher." + module[2:]
                    )
                if module != "batcher" and not module.startswith(allowed):
                    bad.append(f"{path.name}: {stripped}")
                if path.parent == WORKFLOW and module.startswith("batcher.ckpt.load_checkpoint"):
                    bad.append(f"{path.name}: {stripped} (torch)")
    assert not bad, bad


def test_tests_mirror_modules() -> None:
    """Every module has its own test file: batcher/<floor>/x.py -> tests/test_x.py (module names
    are unique across floors), batcher/workflow/x.py -> tests/test_workflow_x.py
    (batcher/__init__.py: tests/test_api.py)."""
    stems = [p.stem for p in IN_JOB if p.stem != "__init__"]
    assert len(stems) == len(set(stems)), "two in-job modules share a name"
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    expected = {f"test_{p.stem}.py" for p in IN_JOB if p.stem != "__init__"}
    expected |= {f"test_workflow_{p.stem}.py" for p in WORKFLOW.glob("*.py") if not p.stem.startswith("__")}
    assert not sorted(expected - tests), f"modules without a test file: {sorted(expected - tests)}"


def test_the_architecture_page_lists_every_module_and_no_other() -> None:
    """docs/architecture.md's tables, checked against the code."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9_/]+)`(?:, `([a-z0-9_/]+)`)?", text, re.M))
    names = {n for pair in listed for n in pair if n}
    in_job = {str(p.relative_to(PACKAGE).with_suffix("")) for p in IN_JOB}
    in_job = {n for n in in_job if not n.endswith("/__init__")}
    workflow = {p.stem for p in WORKFLOW.glob("*.py") if not p.stem.startswith("__")}
    assert in_job | workflow == names, (
        sorted((in_job | workflow) - names),
        sorted(names - in_job - workflow),
    )


def test_no_private_name_is_imported_across_modules() -> None:
    bad = []
    for path in [*IN_JOB, *sorted(WORKFLOW.glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("batcher"):
                bad += [
                    f"{_module(path)}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                ]
    assert not bad, bad


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """The string literals of a Python file (docstrings left out), or of a Snakefile's lines."""
    if path.suffix != ".py":
        return [(n, m) for n, line in enumerate(path.read_text().splitlines(), 1)
                if not line.lstrip().startswith("#") for m in re.findall(r'"([^"]*)"', line)]  # fmt: skip
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_result_and_run_paths_are_spelled_only_by_the_layout() -> None:
    """#28: every path of the run folder and of results/ comes from batcher.run.layout; the
    Snakefile, the rules, their scripts and the library never spell one out."""
    spelled = re.compile(r"^results(/|$)|final\.json$|final\.pt$|^metrics\.jsonl$|^ckpt(/|$)")
    sources = [
        *(p for p in IN_JOB if p != PACKAGE / "run" / "layout.py"),
        *sorted(WORKFLOW.glob("*.py")),
        ROOT / "Snakefile",
        *(ROOT / "workflow" / "rules").glob("*.smk"),
        *(ROOT / "workflow" / "scripts").glob("*.py"),
    ]
    bad = [
        f"{path.relative_to(ROOT)}:{n}: {text!r}"
        for path in sources
        for n, text in _string_literals(path)
        if spelled.search(text)
    ]
    assert not bad, bad
    assert all(spelled.search(t) for t in ("results/{exp}/final.json", "ckpt", "runs/a/final.pt"))


def test_the_where_to_change_what_table_names_files_and_names_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text().split("## Where to change what", 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 5
    for row in rows:
        files = row.split("|")[2]
        for path, names in re.findall(r"`([\w/<>.-]+\.(?:py|yaml))`(?: \(([^)]*)\))?", files):
            if "<" in path:
                continue
            found = [p for p in (PACKAGE / path, ROOT / path, ROOT / "batcher" / path) if p.exists()]
            assert found, f"docs/architecture.md names {path}, which does not exist"
            for name in re.findall(r"`(\w+)`", names):
                assert name in found[0].read_text(), f"{path} has no {name}"


def test_no_in_job_module_is_over_300_lines_and_segment_only_orchestrates() -> None:
    """#28's bound: a module that grows past 300 lines holds more than one concern; ``Segment``
    (the loop, which only orchestrates) stays within 250."""
    long = {str(p.relative_to(PACKAGE)): n for p in IN_JOB if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
    tree = ast.parse((PACKAGE / "api" / "loop.py").read_text())
    (segment,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Segment"]
    assert segment.end_lineno is not None and segment.end_lineno - segment.lineno + 1 <= 250
