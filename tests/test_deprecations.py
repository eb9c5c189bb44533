"""The deprecation gate of `make test` (pyproject filterwarnings, tests/conftest.py): a deprecation raised
from our code, by Lightning or by Hydra fails the run, a third-party library's own stays quiet, and
every Hydra entry point pins version_base="1.3"."""
from __future__ import annotations

import ast
import warnings

import pytest
from hydra._internal.deprecation_warning import deprecation_warning
from hydra.errors import HydraDeprecationError
from pytorch_lightning.utilities.rank_zero import LightningDeprecationWarning, rank_zero_deprecation

from tests.conftest import ROOT

INITIALIZE = {"initialize", "initialize_config_dir", "initialize_config_module"}  # from hydra import ...


def test_a_deprecation_raised_by_our_code_fails():
    with pytest.raises(DeprecationWarning, match="old call"):
        warnings.warn("old call", DeprecationWarning)  # attributed to this module, one of ours
    with pytest.raises(FutureWarning, match="old call"):
        warnings.warn("old call", FutureWarning)


def test_a_third_party_deprecation_stays_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit("old call", DeprecationWarning, "lib.py", 1, module="somelib.sub")
    assert [str(w.message) for w in caught] == []  # ignored, not raised


def test_lightning_and_hydra_deprecations_fail():
    with pytest.raises(LightningDeprecationWarning, match="old flag"):
        rank_zero_deprecation("old flag")
    with pytest.raises(HydraDeprecationError, match="old key"):
        deprecation_warning("old key")
    with pytest.raises(UserWarning, match="(?s).*version_base"):
        warnings.warn("\nThe version_base parameter is not specified.", UserWarning)


def _hydra_calls(tree: ast.AST):
    """`hydra.main(...)`, `hydra.initialize*(...)` and `initialize*(...)` calls."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and ast.unparse(func.value) == "hydra" and func.attr in {"main", *INITIALIZE}:
            yield node
        elif isinstance(func, ast.Name) and func.id in INITIALIZE:
            yield node


def test_every_hydra_entry_point_pins_version_base():
    calls = 0
    for path in [p for d in ("experiments", "jedi", "posedistill", "tests") for p in (ROOT / d).rglob("*.py")]:
        source = path.read_text()
        if "hydra" not in source:
            continue
        for call in _hydra_calls(ast.parse(source)):
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            assert "version_base" in kw and ast.literal_eval(kw["version_base"]) == "1.3", where
            calls += 1
    assert calls >= 4  # train, evaluate, analyze and the tests' compose
