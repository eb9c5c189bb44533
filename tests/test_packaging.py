"""Packaging: the project installs beside IPython, and its package list names every package folder."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[list[str], dict[str, str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["packages"], setuptools.get("package-dir", {})


def test_package_list_names_every_package_folder():
    packages, package_dir = _declared()
    folder_of = {name: folder for name, folder in package_dir.items()}
    expected = set()
    for top in ("jedi", "posedistill", "experiments"):
        import_name = next((n for n, f in folder_of.items() if f == top), top)
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            expected.add(".".join((import_name, *rel)))
    assert sorted(packages) == sorted(expected)
    assert "jedi" not in {p.split(".")[0] for p in packages}, "`jedi` would shadow IPython's completion library"


@pytest.mark.timeout(600)
def test_installs_next_to_ipython_and_both_import(tmp_path):
    """A fresh venv (seeing this environment's torch) with IPython and the project: `import jedi` is
    IPython's completion library, `import jedi_rnn` is the project, and IPython completes names from it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # this environment's packages (torch, lightning, ...) without reinstalling them
    Path(site, "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "ipython"], capture_output=True, text=True)
    if pip.returncode != 0 and "connection" in (pip.stderr + pip.stdout).lower():
        pytest.skip(f"the package index is unreachable: {pip.stderr.strip()[-200:]}")
    assert pip.returncode == 0, pip.stderr
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True,
                   capture_output=True, cwd=tmp_path)
    probe = """
import jedi, jedi_rnn.lit_module
assert hasattr(jedi, "Script"), jedi.__file__          # the completion library, not the project
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.Completer.use_jedi = True
shell.run_cell("import jedi_rnn.lit_module")
with provisionalcompleter():
    found = [(c.text, c.type) for c in shell.Completer.completions("jedi_rnn.lit_module.JediMod", 27)]
assert ("JediModule", "class") in found, found   # the type is jedi's inference: completion went through jedi
print("ok")
"""
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr
