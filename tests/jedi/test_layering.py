"""Imports run downward: the dynamics core imports no other part of the project, data and models
never import the analyses, and nothing below the analyses plots."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

JEDI = Path(__file__).resolve().parents[2] / "jedi"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a source file imports (``from x import y`` gives x and x.y)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def offending(folder: str, forbidden) -> list[str]:
    files = sorted((JEDI / folder).rglob("*.py"))
    assert files, f"no sources under jedi/{folder}"
    return [f"{p.relative_to(JEDI.parent)}: {m}" for p in files for m in sorted(imported_modules(p)) if forbidden(m)]


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("folder", ["data", "models", "dynamics"])
def test_data_models_and_dynamics_never_import_the_analyses_or_plot(folder):
    assert offending(folder, lambda m: _under(m, "jedi_rnn.analysis", "matplotlib")) == []


def test_dynamics_imports_nothing_else_of_the_project():
    assert offending("dynamics", lambda m: _under(m, "jedi_rnn", "posedistill", "experiments")
                     and not _under(m, "jedi_rnn.dynamics")) == []


def test_the_ast_scan_sees_a_forbidden_import(tmp_path):
    (tmp_path / "bad.py").write_text("import os\nfrom jedi_rnn.analysis.plotting import plt\n")
    assert "jedi_rnn.analysis.plotting" in imported_modules(tmp_path / "bad.py")


def test_loading_task_recordings_imports_no_analysis_and_no_plotting_of_ours():
    """matplotlib itself may arrive through Lightning's torchmetrics; no module of ours may ask for it."""
    probe = """
import builtins, sys
asked = []
original = builtins.__import__
def spy(name, globals=None, *args, **kwargs):
    importer = (globals or {}).get("__name__", "")
    if name.split(".")[0] == "matplotlib" and importer.split(".")[0] == "jedi_rnn":
        asked.append(importer)
    return original(name, globals, *args, **kwargs)
builtins.__import__ = spy
import jedi_rnn.data.task_recordings, jedi_rnn.data.teachers, jedi_rnn.models.rnn, jedi_rnn.models.task_teacher
print(sorted(set(asked)), sorted(m for m in sys.modules if m.startswith("jedi_rnn.analysis")))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr
