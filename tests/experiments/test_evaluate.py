"""A finished run is rebuilt from its saved config and checkpoint: evaluation reproduces its test
metrics, and analyses run on it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.experiments.test_train import TINY_JEDI


def _cli(module: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", module, *args, f"paths.log_dir={tmp_path}/logs",
                           "extras.print_config=false"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_evaluate_and_analyze_a_finished_run(tmp_path):
    run_dir = tmp_path / "run"
    res = _cli("experiments.train", [*TINY_JEDI, "trainer.max_epochs=2", "logger=none", "analyze=false",
                                     "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
                                     f"hydra.run.dir={run_dir}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    trained = json.loads((run_dir / "metrics.json").read_text())
    best = run_dir / "checkpoints" / "best.ckpt"
    eval_dir = tmp_path / "eval"
    res = _cli("experiments.evaluate", [f"ckpt_path={best}", f"hydra.run.dir={eval_dir}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    # same weights, same data, same deterministic inference -> the same test numbers
    assert evaluated["test/r2"] == pytest.approx(trained["test/r2"], abs=1e-5)
    assert evaluated["test/r2_heldout_cond"] == pytest.approx(trained["test/r2_heldout_cond"], abs=1e-5)
    an_dir = tmp_path / "analysis"
    res = _cli("experiments.analyze", [f"ckpt_path={best}", "analysis=jedi/multifreq", "~analysis.probes",
                                       "~analysis.fixed_points", "~analysis.lyapunov", f"hydra.run.dir={an_dir}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    analysed = json.loads((an_dir / "metrics.json").read_text())
    assert "analysis/spectra/radius_mean" in analysed and "analysis/generalisation/r2_seen" in analysed
    assert list((an_dir / "figures").glob("*.png"))
