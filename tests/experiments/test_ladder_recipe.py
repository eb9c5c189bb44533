"""The PoseDistill ladder recipe at its tiny size, through the recipes' Hydra multirun."""
from __future__ import annotations

import csv
import math

import pytest

from experiments.recipes import posedistill_ladder as ladder


@pytest.mark.slow
def test_ladder_recipe_runs_every_row_and_trains_the_shared_stages_once(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = ladder.main(["--size", "tiny", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "ladder")])
    with open(out / "ladder.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == [r.name for r in ladder.rows()]
    assert all(r["status"] == "completed" for r in table), [(r["method"], r["status"]) for r in table]
    assert all(math.isfinite(float(r["pa_mpjpe"])) for r in table)
    checks = (out / "checks.md").read_text()
    assert "full PA-MPJPE ≤ 0.85 × source-only" in checks and "n/a" not in checks
    assert (out / "figures" / "pa_mpjpe.png").is_file() and (out / "figures" / "skeletons.png").is_file()
    # stages A-C once for every row; G^s once per normalisation (GroupNorm rows, BatchNorm rows)
    stages = tmp_path / "cache" / "stages"
    assert [len(list(stages.glob(f"{s}-*"))) for s in ("prior", "motion", "relations", "source")] == [1, 1, 1, 2]
    # the report run of W&B group posedistill_ladder holds the ladder and the checks
    (run,) = (out / "wandb").glob("offline-run-*")
    assert {p.name.split("_")[0] for p in (run / "files" / "media" / "table" / "tables").glob("*.table.json")} \
        == {"ladder", "checks"}
