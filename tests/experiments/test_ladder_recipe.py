"""The PoseDistill ladder recipe's tables and checks over several stage-E seeds."""
from __future__ import annotations

import csv

import pytest

from experiments.recipes import posedistill_ladder as ladder


def _results(pa_by_row: dict[str, list[float]]) -> list:
    """Recipe results with the given test PA-MPJPE per seed (other metrics: 2 × PA-MPJPE)."""
    out = []
    for row in ladder.rows():
        runs = [{"status": "completed", "test/pa_mpjpe": v, "test/mpjpe": 2 * v}
                for v in pa_by_row.get(row.name, [150.0, 150.0])]
        out.append((row, runs))
    return out


def test_tables_report_seed_means_sd_and_ratio(tmp_path):
    names = [r.name for r in ladder.rows()]
    results = _results({names[0]: [170.0, 170.0, 170.0], names[4]: [160.0, 162.0, 167.0]})
    ladder.write_tables(results, tmp_path)
    with open(tmp_path / "ladder.csv") as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    full = table[names[4]]
    assert float(full["pa_mpjpe"]) == pytest.approx(163.0)
    assert float(full["mpjpe"]) == pytest.approx(326.0)
    # sample sd of (160, 162, 167): sqrt((9 + 1 + 16) / 2)
    assert float(full["pa_mpjpe sd over seeds"]) == pytest.approx((26 / 2) ** 0.5)
    assert full["seeds"] == "3" and full["status"] == "completed"
    assert float(full["PA-MPJPE / source-only"]) == pytest.approx(163.0 / 170.0)
    assert float(table[names[0]]["pa_mpjpe sd over seeds"]) == 0.0


def test_checks_compare_seed_means_and_state_the_spread(tmp_path):
    names = [r.name for r in ladder.rows()]
    # source 170 → contrastive 164 → flip 162 → flip-backward 163 (worse) → full 100 (≤ 0.6 × 170 = 102)
    results = _results({names[0]: [170.0, 170.0], names[1]: [163.0, 165.0], names[2]: [161.0, 163.0],
                        names[3]: [162.0, 164.0], names[4]: [99.0, 101.0], names[5]: [171.0, 169.0]})
    ladder.write_checks(results, tmp_path)
    lines = (tmp_path / "checks.md").read_text().splitlines()
    row = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert row["full PA-MPJPE ≤ 0.6 × source-only"].endswith("PASS |")
    assert row[f"'{names[1]}' improves on '{names[0]}'"].endswith("PASS |")
    assert row[f"'{names[3]}' improves on '{names[2]}'"].endswith("FAIL |")
    # the gain against the combined sd: contrastive (163, 165) sd √2, flip (161, 163) sd √2 → 2.0 mm
    assert "gain +2.0 mm, seed sd 2.0 mm" in row[f"'{names[2]}' improves on '{names[1]}'"]
    assert row[f"full beats '{names[5]}'"].endswith("PASS |")


def test_one_seed_keeps_the_single_run_layout(tmp_path):
    row = ladder.rows()[0]
    assert ladder.run_dir_of(tmp_path, row, None) == tmp_path / "runs" / "source_only"
    assert ladder.run_dir_of(tmp_path, row, 7) == tmp_path / "runs" / "source_only_seed7"
