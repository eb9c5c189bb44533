"""The paper's JEDI sweep: embedding size x hypernetwork width (spec jedi.md §8i), as one Hydra multirun
(grid) or as an Optuna search, summarised as a heat-map and a table.

    python -m experiments.recipes.jedi_sweep [--size tiny|small|paper] [--launcher local|parallel|slurm]
                                             [--jobs N] [--optuna N] [--embedding-dims 2 4 ...] [--widths 32 64 ...]

The grid is one multirun of `experiment=jedi/multifreq size=<size> model.embedding_dim=<d>
model.hypernet.hidden_dim=<w>` jobs (experiments.recipes.launch) into `<out>/grid/runs/emb<d>_width<w>/`;
`--optuna N` instead runs `python -m experiments.train -m hparams_search=jedi_optuna` for N trials into
`<out>/optuna/`. `--launcher parallel` uses `hydra/launcher=local_parallel` (joblib), `slurm` uses
`hydra/launcher=slurm`. All jobs share the W&B group `jedi_sweep`. A job that fails (a divergent
setting, an impossible value) is recorded by the framework (`metrics.json` with status and error) and
shown as a failed cell and row; the other jobs go on. Analyses are skipped (`analyze=false`): the
sweep scores reconstruction.

Writes `sweep.md`, `sweep.csv` and `figures/heatmap.png` (val R^2 and held-out-condition R^2 per
embedding size x width; failed cells hatched) into `<out>` and prints it.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from experiments.recipes import report  # noqa: E402
from experiments.recipes.launch import LAUNCHERS, Job, launch, read_metrics  # noqa: E402
from experiments.recipes.report import Run, Table  # noqa: E402

GROUP = "jedi_sweep"
EXPERIMENT = "jedi/multifreq"
EMB, WIDTH, LR = "model.embedding_dim", "model.hypernet.hidden_dim", "model.lr"
METRICS = [("val R2", "val/r2"), ("R2 held-out trials", "test/r2"), ("R2 held-out conditions", "test/r2_heldout_cond"),
           ("parameters", "model/params_total"), ("fit time (s)", "time/fit_s")]
# the grid axes per run size (embedding sizes, hypernetwork widths)
GRIDS = {"tiny": ([2, 4], [16, 32]), "small": ([2, 8, 32], [32, 128, 512]),
         "paper": ([2, 4, 8, 16, 32], [32, 64, 128, 256, 512])}
# every job: the sweep scores reconstruction, no analyses, no config print or progress bar
COMMON = ["analyze=false", "extras.print_config=false", "trainer.enable_progress_bar=false",
          "~callbacks.rich_progress_bar"]


def grid_jobs(size: str, dims: Sequence[int], widths: Sequence[int], wandb: bool, extra: Sequence[str] = ()) -> list[Job]:
    logger = [f"logger.wandb.group={GROUP}"] if wandb else ["logger=csv"]
    return [Job(f"emb{d}_width{w}", (f"experiment={EXPERIMENT}", f"size={size}", f"{EMB}={d}", f"{WIDTH}={w}",
                                      *COMMON, *logger, *extra))
            for d in dims for w in widths]


def run_optuna(size: str, sweep_dir: Path, launcher: str, trials: int, wandb: bool, extra: Sequence[str]) -> int:
    """The Optuna search: one `experiments.train` multirun with the Optuna sweeper; its exit status."""
    cmd = [sys.executable, "-m", "experiments.train", "-m", f"experiment={EXPERIMENT}", f"size={size}",
           "hparams_search=jedi_optuna", f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={sweep_dir}",
           *LAUNCHERS[launcher], *COMMON, *([f"logger.wandb.group={GROUP}"] if wandb else ["logger=csv"]), *extra]
    print("$", " ".join(cmd), flush=True)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(sweep_dir / "sweep.log", "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def swept_values(run_path: Path) -> dict[str, Optional[str]]:
    """A job's swept values from its `.hydra/overrides.yaml` (embedding size, width, learning rate)."""
    path = run_path / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.exists() else []
    found = dict(item.split("=", 1) for item in items if "=" in item)
    return {"embedding_dim": found.get(EMB), "hidden_dim": found.get(WIDTH), "lr": found.get(LR)}


def collect(sweep_dir: Path) -> list[dict]:
    """One record per job directory of a multirun (named grid jobs or numbered Optuna trials)."""
    def natural(path: Path) -> list:  # emb2_width16 before emb16_width16, trial 2 before trial 10
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=natural)
    return [{"job": p.name, **swept_values(p), "run": Run(p.name, read_metrics(p) or {"status": "not run"})}
            for p in jobs]


def write_table(records: list[dict], out: Path) -> Table:
    """sweep.md / sweep.csv: a row per job, and the best val R^2."""
    header = ["job", "embedding_dim", "hidden_dim", "lr", *[c for c, _ in METRICS], "status", "error"]
    rows, cells = [], []
    for r in records:
        run = r["run"]
        base = [r["job"], r["embedding_dim"], r["hidden_dim"]]
        rows.append([*base, r["lr"], *[run.get(k) for _, k in METRICS], run.get("status"), report.errors([run])])
        lr = f"{float(r['lr']):.3g}" if r["lr"] else ""
        cells.append([*map(str, base), lr, *[_cell(run.get(k), k) for _, k in METRICS], str(run.get("status")),
                      report.errors([run])])
    done = [r for r in records if r["run"].completed and report.values([r["run"]], "val/r2")]
    best = max(done, key=lambda r: r["run"].get("val/r2")) if done else None
    note = (f"Best val R^2: job {best['job']} (embedding_dim {best['embedding_dim']}, hidden_dim "
            f"{best['hidden_dim']}): {best['run'].get('val/r2'):.3f}." if best else "No job completed.")
    table = Table("sweep", header, rows, cells=cells, notes=[note])
    report.write_csv(table, out / "sweep.csv")
    (out / "sweep.md").write_text(table.markdown())
    return table


def _cell(value, key: str) -> str:
    if key == "model/params_total" and report.values([Run("", {key: value})], key):
        return f"{int(value):,}"
    return report.fmt(value, 0 if key.startswith("time/") else 3)


def _grid(records: list[dict], key: str) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
    """Mean metric per (embedding_dim, hidden_dim) cell (NaN if none) and a mask of cells whose every job
    failed."""
    dims = sorted({int(r["embedding_dim"]) for r in records if r["embedding_dim"] is not None})
    widths = sorted({int(r["hidden_dim"]) for r in records if r["hidden_dim"] is not None})
    vals = np.full((len(dims), len(widths)), np.nan)
    failed = np.zeros_like(vals, dtype=bool)
    for i, d in enumerate(dims):
        for j, w in enumerate(widths):
            cell = [r["run"] for r in records if r["embedding_dim"] == str(d) and r["hidden_dim"] == str(w)]
            found = report.mean([run for run in cell if run.completed], key)
            if found is not None:
                vals[i, j] = found
            failed[i, j] = bool(cell) and found is None
    return dims, widths, vals, failed


def write_heatmap(records: list[dict], out: Path) -> Path:
    panels = [("val R$^2$", "val/r2"), ("held-out-condition R$^2$", "test/r2_heldout_cond")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, key) in zip(axes[0], panels):
        dims, widths, vals, failed = _grid(records, key)
        if not dims or not widths:
            ax.set_axis_off()
            continue
        im = ax.imshow(vals, cmap="viridis", origin="lower", aspect="auto")
        fig.colorbar(im, ax=ax)
        for i in range(len(dims)):
            for j in range(len(widths)):
                if failed[i, j]:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xx", color="0.5"))
                    ax.text(j, i, "failed", ha="center", va="center", fontsize=7, color="k")
                elif np.isfinite(vals[i, j]):
                    ax.text(j, i, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(widths)))
        ax.set_xticklabels(widths)
        ax.set_yticks(range(len(dims)))
        ax.set_yticklabels(dims)
        ax.set_xlabel("hypernetwork width")
        ax.set_ylabel("embedding size")
        ax.set_title(title)
    fig.tight_layout()
    (out / "figures").mkdir(parents=True, exist_ok=True)
    path = out / "figures" / "heatmap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(GRIDS), default="small")
    ap.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local")
    ap.add_argument("--jobs", type=int, default=1, help="grid jobs at a time (local/parallel; 1 CPU thread each)")
    ap.add_argument("--optuna", type=int, default=None, metavar="N", help="Optuna search of N trials instead of the grid")
    ap.add_argument("--embedding-dims", type=int, nargs="+", default=None, help="grid rows (default: by size)")
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="grid columns (default: by size)")
    ap.add_argument("--no-wandb", action="store_true", help="CSV logs only (logger=csv), no report in W&B")
    ap.add_argument("--out", type=Path, default=None, help="default: logs/recipes/jedi_sweep_<size>")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for every job (repeatable)")
    args = ap.parse_args(argv)
    out = (args.out or Path("logs") / "recipes" / f"jedi_sweep_{args.size}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.optuna:
        sweep_dir = out / "optuna"
        code = run_optuna(args.size, sweep_dir, args.launcher, args.optuna, not args.no_wandb, args.override)
    else:
        dims, widths = GRIDS[args.size]
        sweep_dir = out / "grid"
        jobs = grid_jobs(args.size, args.embedding_dims or dims, args.widths or widths, not args.no_wandb, args.override)
        code = launch(jobs, sweep_dir, args.launcher, args.jobs)
        sweep_dir = sweep_dir / "runs"
    if code != 0:
        print(f"the multirun exited with {code}; see its log in {sweep_dir.parent}", flush=True)
    records = collect(sweep_dir) if sweep_dir.is_dir() else []
    table = write_table(records, out)
    print(table.markdown())
    heatmap = write_heatmap(records, out)
    if not args.no_wandb:
        report.log_to_wandb(GROUP, out, [table], [heatmap])
    print(f"results: {out} (sweep.md, sweep.csv, figures/heatmap.png)")
    return out


if __name__ == "__main__":
    main()
