"""The recipes' report: tables and checks from runs' metrics.json files, the W&B report run offline,
and the launcher's resume (a completed job is not run again)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.recipes import jedi_baselines, launch, report
from experiments.recipes import posedistill_ladder as ladder
from experiments.recipes.report import Table


def _write_runs(out: Path, metrics_by_job: dict[str, dict]) -> list[launch.Job]:
    """Hand-written metrics.json files in <out>/runs/<job>/, as the framework writes them."""
    jobs = []
    for name, metrics in metrics_by_job.items():
        jobs.append(launch.Job(name, ()))
        if metrics is not None:
            path = launch.run_dir(out, name)
            path.mkdir(parents=True)
            (path / "metrics.json").write_text(json.dumps(metrics))
    return jobs


def test_report_statistics_over_seeds_follow_their_definitions(tmp_path):
    jobs = _write_runs(tmp_path, {"a/seed_1": {"status": "completed", "test/r2": 0.9, "x": 1.0},
                                  "a/seed_2": {"status": "completed", "test/r2": 0.7, "x": float("nan")},
                                  "a/seed_3": None})  # killed before it wrote metrics.json
    runs = list(report.collect(jobs, tmp_path).values())
    assert report.mean(runs, "test/r2") == pytest.approx(0.8)
    assert report.sd(runs, "test/r2") == pytest.approx(0.02 ** 0.5)  # sample sd of 0.9, 0.7: sqrt(0.02 / 1)
    assert report.mean(runs, "x") == 1.0 and report.sd(runs, "x") is None  # NaN is not a value
    assert report.status(runs) == "completed,failed"
    assert "no metrics.json; see" in runs[2].get("error") and "a/seed_3" in runs[2].get("error")


def test_baselines_table_and_checks_from_metrics_files(tmp_path):
    rows = {r.name: r for r in jedi_baselines.rows()}

    def run(seed, r2, acc):
        return {"status": "completed", "test/r2_heldout_cond": r2, "analysis/probes/accuracy": acc,
                "analysis/probes/chance": 0.25, "model/params_total": 1000 + 2 * seed, "seed": seed}

    # JEDI wins R2 at seed 1 (0.9 > 0.8) but not at seed 2 (0.7 < 0.75), although its mean is higher
    metrics = {"multitask/jedi/seed_1": run(1, 0.9, 0.8), "multitask/jedi/seed_2": run(2, 0.7, 0.9),
               "multitask/vae/seed_1": run(1, 0.8, 0.5), "multitask/vae/seed_2": run(2, 0.75, 0.6),
               "multitask/shared_rnn/seed_1": {"status": "completed", "test/r2_heldout_cond": 0.1, "seed": 1},
               "multitask/shared_rnn/seed_2": {"status": "completed", "test/r2_heldout_cond": 0.1, "seed": 2}}
    runs = report.collect(_write_runs(tmp_path, metrics), tmp_path)
    results = [("multitask", rows[name], [runs[f"multitask/{slug}/seed_{s}"] for s in (1, 2)])
               for name, slug in (("JEDI", "jedi"), ("VAE", "vae"), ("shared RNN", "shared_rnn"))]
    checks = jedi_baselines.write_checks(results, tmp_path).markdown()
    assert "| multitask | JEDI beats VAE on held-out-condition R^2 | 0.800 vs 0.775 | 1/2 | FAIL |" in checks
    assert "| multitask | JEDI beats VAE on condition accuracy (CV) | 0.850 vs 0.550 | 2/2 | PASS |" in checks
    # no embedding: the shared RNN is scored at chance
    assert "| multitask | JEDI beats shared RNN on condition accuracy (CV) | 0.850 vs 0.250 | 2/2 | PASS |" in checks
    assert (tmp_path / "checks.md").read_text() == checks
    summary, _ = jedi_baselines.write_tables(results, tmp_path, "tiny")
    table_md = (tmp_path / "table.md").read_text()
    assert "0.800 ± 0.141" in table_md  # mean and sample sd of 0.9, 0.7
    assert "| 1,003 |" in table_md  # parameters: the mean of 1002 and 1004, as an integer
    with open(tmp_path / "table.csv") as f:
        lines = list(csv.DictReader(f))
    assert [(r["model"], r["seed"]) for r in lines] == [(m, s) for m in ("JEDI", "VAE", "shared RNN") for s in ("1", "2")]
    assert float(lines[0]["R2 held-out conditions"]) == 0.9
    assert summary.rows[0][summary.header.index("R2 held-out conditions")] == pytest.approx(0.8)


def _ladder_results(tmp_path: Path, pa_by_row: dict[str, list[float]], spread: dict[str, float] | None = None) -> list:
    """Ladder results read back from metrics.json files: test PA-MPJPE per seed (MPJPE 2 x PA-MPJPE) and
    pose spread ratio (default 0.8)."""
    metrics, plan = {}, []
    for row in ladder.rows():
        values = pa_by_row.get(row.name, [150.0, 150.0])
        names = [f"{ladder.slug(row.name)}/seed_{i}" for i in range(len(values))]
        ratio = (spread or {}).get(row.name, 0.8)
        metrics.update({n: {"status": "completed", "test/pa_mpjpe": v, "test/mpjpe": 2 * v, "test/pose_spread_ratio": ratio}
                        for n, v in zip(names, values)})
        plan.append((row, names))
    runs = report.collect(_write_runs(tmp_path, metrics), tmp_path)
    return [(row, [runs[n] for n in names]) for row, names in plan]


def test_ladder_table_reports_seed_means_sd_and_ratio(tmp_path):
    results = _ladder_results(tmp_path, {ladder.SOURCE: [170.0, 170.0, 170.0], ladder.FULL: [160.0, 162.0, 167.0]})
    ladder.write_tables(results, tmp_path)
    with open(tmp_path / "ladder.csv") as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    full = table[ladder.FULL]
    assert float(full["pa_mpjpe"]) == pytest.approx(163.0)
    assert float(full["mpjpe"]) == pytest.approx(326.0)
    # sample sd of (160, 162, 167): sqrt((9 + 1 + 16) / 2)
    assert float(full["pa_mpjpe sd over seeds"]) == pytest.approx((26 / 2) ** 0.5)
    assert full["seeds"] == "3" and full["status"] == "completed"
    assert float(full["PA-MPJPE / source-only"]) == pytest.approx(163.0 / 170.0)
    assert float(table[ladder.SOURCE]["pa_mpjpe sd over seeds"]) == 0.0
    assert "| 163.0 |" in (tmp_path / "ladder.md").read_text()


def test_ladder_checks_compare_seed_means_and_state_the_spread(tmp_path):
    rungs = [r.name for r in ladder.rows() if r.ladder]
    assert rungs[0] == ladder.SOURCE and rungs[-1] == ladder.FULL and ladder.CONTRASTIVE in rungs
    # source 170 → anchors 166 → contrastive 164 → flip 162 (within the spread) → flip-backward 163 (worse)
    # → full 120 (≤ 0.75 × 170 = 127.5 at paper size)
    pa = dict(zip(rungs, ([170.0, 170.0], [165.0, 167.0], [163.0, 165.0], [161.0, 163.0], [162.0, 164.0],
                          [119.0, 121.0])))
    results = _ladder_results(tmp_path, {**pa, ladder.PSEUDO_LABEL: [171.0, 169.0], ladder.DANN: [119.0, 119.0]},
                              spread={ladder.FULL: 0.65})
    ladder.write_checks(results, tmp_path, size="paper")
    lines = (tmp_path / "checks.md").read_text().splitlines()
    row = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert row["full PA-MPJPE ≤ 0.75 × source-only"].endswith("PASS |")
    assert row["full pose spread ratio ≥ 0.7"].endswith("| 0.65 | FAIL |")
    assert row[f"'{rungs[1]}' improves on '{rungs[0]}'"].endswith("PASS |")
    assert row[f"'{rungs[4]}' improves on '{rungs[3]}'"].endswith("FAIL |")
    # the gain against the combined sd: contrastive (163, 165) sd √2, flip (161, 163) sd √2 → 2.0 mm: not beyond it
    flip = row[f"'{rungs[3]}' improves on '{rungs[2]}'"]
    assert "gain +2.0 mm, seed sd 2.0 mm" in flip and flip.endswith("FAIL |")
    assert row[f"full beats '{ladder.PSEUDO_LABEL}'"].endswith("PASS |")
    assert row[f"full beats '{ladder.DANN}'"].endswith("FAIL |")  # 120 vs 119


def test_a_missing_run_makes_its_checks_not_applicable(tmp_path):
    results = _ladder_results(tmp_path, {})
    i = [row.name for row, _ in results].index(ladder.FULL)
    results[i] = (results[i][0], [report.Run("x", {"status": "failed", "error": "boom"})])
    lines = ladder.write_checks(results, tmp_path).markdown()
    assert "| full PA-MPJPE ≤ 0.85 × source-only | – vs 0.85 × 150.0 mm | n/a |" in lines
    assert f"| '{ladder.ANCHORS_ONLY}' improves on '{ladder.SOURCE}' | 150.0 mm vs 150.0 mm (gain +0.0 mm, seed sd 0.0 mm) | FAIL |" in lines
    rows_run = ladder.select_rows(["source_only", "dann_feature_adversarial"])
    assert [r.name for r in rows_run] == [ladder.SOURCE, ladder.DANN]
    with pytest.raises(SystemExit, match="unknown"):
        ladder.select_rows(["no_such_row"])


@pytest.mark.wandb
def test_report_tables_and_figures_reach_the_offline_wandb_run(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    monkeypatch.setenv("WANDB_MODE", "offline")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "bars.png")
    plt.close(fig)
    table = Table("table", ["model", "R2", "status"], [["JEDI", 0.9, "completed"], ["VAE", None, "failed"]])
    run_path = report.log_to_wandb("test_group", tmp_path, [table], [tmp_path / "bars.png"])
    assert run_path is not None and run_path.parent == tmp_path / "wandb" and run_path.name.startswith("offline-run-")
    (logged,) = (run_path / "files" / "media" / "table" / "tables").glob("table_*.table.json")
    content = json.loads(logged.read_text())
    assert content["columns"] == ["model", "R2", "status"]
    assert content["data"] == [["JEDI", 0.9, "completed"], ["VAE", None, "failed"]]
    assert list((run_path / "files" / "media" / "images" / "figures").glob("bars_*.png"))


def test_a_wandb_failure_does_not_fail_the_report(tmp_path, monkeypatch):
    import wandb

    def unreachable(**kwargs):
        raise wandb.errors.CommError("service unreachable")
    monkeypatch.setattr(wandb, "init", unreachable)
    assert report.log_to_wandb("test_group", tmp_path, [Table("t", ["a"], [[1.0]])]) is None


def test_launch_runs_nothing_when_every_job_completed(tmp_path):
    jobs = _write_runs(tmp_path, {"a": {"status": "completed"}, "b/seed_1": {"status": "completed"}})
    assert launch.launch(jobs, tmp_path) == 0
    assert not (tmp_path / launch.LAUNCH_LOG).exists()  # no multirun was started
    with pytest.raises(ValueError, match="job names must use letters, digits"):
        launch.launch([launch.Job("a,b", ())], tmp_path)


def test_ladder_curves_read_each_runs_csv_log_and_make_one_figure(tmp_path):
    """The per-round loss and pose-spread curves come from each run's Lightning CSV log, rows without
    the key (other metrics logged at the same step) skipped; a row without a log is left out."""
    from pytorch_lightning.loggers import CSVLogger

    rows = ladder.rows()
    jobs = _write_runs(tmp_path, {"full/seed_1": {"status": "completed"}, "source/seed_1": {"status": "completed"}})
    logger = CSVLogger(launch.run_dir(tmp_path, "full/seed_1"), name="csv", version="")
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "train/pose_spread_mm": 200.0 - step}, step=step)
    logger.log_metrics({"test/pa_mpjpe": 150.0}, step=3)
    logger.save()
    curves = ladder.training_curves(launch.run_dir(tmp_path, "full/seed_1"))
    assert curves["train/loss"][0].tolist() == [0, 1, 2]
    assert curves["train/loss"][1].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert curves["train/pose_spread_mm"][1].tolist() == [200.0, 199.0, 198.0]
    assert ladder.training_curves(launch.run_dir(tmp_path, "source/seed_1")) == {}
    runs = report.collect(jobs, tmp_path)
    path = ladder.write_curves([(rows[5], [runs["full/seed_1"]]), (rows[0], [runs["source/seed_1"]])], tmp_path)
    assert path == tmp_path / "figures" / "curves.png" and path.stat().st_size > 0
