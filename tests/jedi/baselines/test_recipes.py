"""The baselines and sweep recipes at their tiny size, through the recipes' Hydra multirun: every row or
job lands in the written tables."""
from __future__ import annotations

import csv
import math

import pytest

from experiments.recipes import jedi_baselines, jedi_sweep


@pytest.mark.slow
def test_baselines_recipe_writes_one_row_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = jedi_baselines.main(["--size", "tiny", "--teachers", "multifreq", "--no-wandb", "--jobs", "2",
                               "--out", str(tmp_path / "rec")])
    with open(out / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == [r.name for r in jedi_baselines.rows()]
    assert all(r["status"] == "completed" for r in table), [(r["model"], r["error"]) for r in table]
    for r in table:
        assert math.isfinite(float(r["R2 held-out conditions"])) and float(r["R2 held-out conditions"]) <= 1.0
        assert int(float(r["parameters"])) > 0 and float(r["fit time (s)"]) > 0
    assert (out / "table.md").read_text().count("| multifreq |") == len(table)
    assert "JEDI beats VAE on held-out-condition R^2" in (out / "checks.md").read_text()
    assert (out / "figures" / "r2.png").is_file() and (out / "figures" / "accuracy.png").is_file()
    # every row ran in its own directory, with the config experiments.evaluate rebuilds it from
    assert all((out / "runs" / "multifreq" / r.slug / ".hydra" / "config.yaml").is_file() for r in jedi_baselines.rows())


def test_sweep_recipe_reports_a_failed_job_and_finishes_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    # embedding size 0 is rejected inside its job: that job fails, the other completes; two jobs at a
    # time through Hydra's joblib launcher
    out = jedi_sweep.main(["--size", "tiny", "--embedding-dims", "2", "0", "--widths", "16",
                           "--launcher", "parallel", "--jobs", "2", "--out", str(tmp_path / "sweep")])
    with open(out / "sweep.csv") as f:
        table = {r["embedding_dim"]: r for r in csv.DictReader(f)}
    assert set(table) == {"2", "0"}
    assert table["2"]["status"] == "completed" and math.isfinite(float(table["2"]["val R2"]))
    assert float(table["2"]["val R2"]) <= 1.0
    assert table["0"]["status"] == "failed" and "embedding_dim" in table["0"]["error"]
    assert "failed" in (out / "sweep.md").read_text()
    assert (out / "figures" / "heatmap.png").is_file()
    # the report run of the recipe's W&B group holds the table (offline)
    assert list((out / "wandb").glob("offline-run-*/files/media/table/tables/sweep_*.table.json"))
