"""The paper's JEDI sweep: embedding size x hypernetwork width (spec jedi.md §8i), as one Hydra multirun
(grid) or as an Optuna search, summarised as a heat-map and a table.

    python -m experiments.recipes.jedi_sweep [--size tiny|small|paper] [--launcher local|parallel|slurm]
                                             [--optuna N] [--embedding-dims 2 4 ...] [--widths 32 64 ...]

The grid is one ``python -m experiments.train -m experiment=jedi/multifreq... model.embedding_dim=...
model.hypernet.hidden_dim=...`` multirun into ``<out>/grid/`` (``--optuna N`` instead runs
``hparams_search=jedi_optuna`` for N trials into ``<out>/optuna/``). ``--launcher parallel`` uses
``hydra/launcher=local_parallel`` (joblib), ``slurm`` uses ``hydra/launcher=slurm``. All jobs share the
W&B group ``jedi_sweep``. A job that fails (a divergent setting, an impossible value) is recorded by the
framework (``metrics.json`` with status and error) and shown as a failed cell and row; the other jobs
go on.

Writes ``sweep.md``, ``sweep.csv`` and ``figures/heatmap.png`` (val R^2 and held-out-condition R^2 per
embedding size x width; failed cells hatched) into ``<out>`` and prints it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.recipes.jedi_baselines import fmt, markdown_table  # noqa: E402

GROUP = "jedi_sweep"
EMB, WIDTH = "model.embedding_dim", "model.hypernet.hidden_dim"
METRICS = [("val R2", "val/r2"), ("R2 held-out trials", "test/r2"), ("R2 held-out conditions", "test/r2_heldout_cond"),
           ("parameters", "model/params_total"), ("fit time (s)", "time/fit_s")]
SIZES = {
    "tiny": {"experiment": "jedi/multifreq_demo", "grid": ([2, 4], [16, 32]),
             "overrides": ["data.source.trials_per_condition=5", "data.source.n_units=24", "data.source.duration_s=0.3",
                           "data.source.warmup_s=0.2", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1",
                           "model.infer.steps=3", "model.infer.val_steps=2"]},
    "small": {"experiment": "jedi/multifreq_demo", "grid": ([2, 8, 32], [32, 128, 512]),
              "overrides": ["trainer.max_epochs=200", "trainer.check_val_every_n_epoch=50", "model.infer.steps=100"]},
    "paper": {"experiment": "jedi/multifreq", "grid": ([2, 4, 8, 16, 32], [32, 64, 128, 256, 512]), "overrides": []},
}
LAUNCHERS = {"local": [], "parallel": ["hydra/launcher=local_parallel"], "slurm": ["hydra/launcher=slurm"]}
# the dynamics analyses are JEDI's own experiments; the sweep scores reconstruction
NO_ANALYSES = ["analysis=none"]


def sweep_command(size: str, sweep_dir: Path, launcher: str, optuna_trials: Optional[int], dims: list[int],
                  widths: list[int], wandb: bool, extra: list[str]) -> list[str]:
    spec = SIZES[size]
    cmd = [sys.executable, "-m", "experiments.train", "-m", f"experiment={spec['experiment']}", *LAUNCHERS[launcher],
           f"hydra.sweep.dir={sweep_dir}", *NO_ANALYSES, *spec["overrides"], "extras.print_config=false",
           "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar"]
    if optuna_trials:
        cmd += ["hparams_search=jedi_optuna", f"hydra.sweeper.n_trials={optuna_trials}"]
    else:
        cmd += [f"{EMB}={','.join(map(str, dims))}", f"{WIDTH}={','.join(map(str, widths))}"]
    cmd += [f"logger.wandb.group={GROUP}"] if wandb else ["logger=csv"]
    return cmd + extra


def parse_overrides(job_dir: Path) -> dict[str, str]:
    """The job's command-line overrides (``.hydra/overrides.yaml``) as key -> value strings."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        item = line.strip().lstrip("-").strip().strip("'\"")
        if "=" in item:
            key, value = item.split("=", 1)
            out[key] = value
    return out


def collect(sweep_dir: Path) -> list[dict]:
    """One record per job directory: its swept values, metrics, status and error."""
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    records = []
    for job in jobs:
        ov = parse_overrides(job)
        metrics_file = job / "metrics.json"
        m = json.loads(metrics_file.read_text()) if metrics_file.exists() else {"status": "not run"}
        records.append({"job": int(job.name), "embedding_dim": ov.get(EMB), "hidden_dim": ov.get(WIDTH),
                        "lr": ov.get("model.lr"), "metrics": m})
    return records


def write_table(records: list[dict], out: Path) -> str:
    header = ["job", "embedding_dim", "hidden_dim", "lr", *[c for c, _ in METRICS], "status", "error"]
    csv_rows, md_rows = [], []
    for r in records:
        m = r["metrics"]
        err = str(m.get("error", "")).replace("|", "/").replace("\n", " ")[:160]
        base = [str(r["job"]), str(r["embedding_dim"]), str(r["hidden_dim"])]
        lr = f"{float(r['lr']):.3g}" if r["lr"] else ""
        csv_rows.append([*base, r["lr"] or "", *[m.get(k, "") for _, k in METRICS], m.get("status", "?"), err])
        md_rows.append([*base, lr, *[fmt(m.get(k), k) for _, k in METRICS], m.get("status", "?"), err])
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(csv_rows)
    done = [r for r in records if r["metrics"].get("status") == "completed" and "val/r2" in r["metrics"]]
    best = max(done, key=lambda r: r["metrics"]["val/r2"]) if done else None
    note = (f"\nBest val R^2: job {best['job']} (embedding_dim {best['embedding_dim']}, hidden_dim "
            f"{best['hidden_dim']}): {best['metrics']['val/r2']:.3f}.\n" if best else "\nNo job completed.\n")
    text = markdown_table(header, md_rows) + "\n" + note
    (out / "sweep.md").write_text(text)
    return text


def _grid(records: list[dict], key: str) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
    """Mean metric per (embedding_dim, hidden_dim) cell (NaN if none) and a mask of cells whose every job
    failed."""
    dims = sorted({int(r["embedding_dim"]) for r in records if r["embedding_dim"] is not None})
    widths = sorted({int(r["hidden_dim"]) for r in records if r["hidden_dim"] is not None})
    vals = np.full((len(dims), len(widths)), np.nan)
    failed = np.zeros_like(vals, dtype=bool)
    for i, d in enumerate(dims):
        for j, w in enumerate(widths):
            cell = [r for r in records if r["embedding_dim"] == str(d) and r["hidden_dim"] == str(w)]
            ok = [r["metrics"][key] for r in cell if r["metrics"].get("status") == "completed"
                  and r["metrics"].get(key) is not None and math.isfinite(r["metrics"][key])]
            if ok:
                vals[i, j] = float(np.mean(ok))
            failed[i, j] = bool(cell) and not ok
    return dims, widths, vals, failed


def write_heatmap(records: list[dict], out: Path) -> None:
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
    fig.savefig(out / "figures" / "heatmap.png", dpi=120)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local")
    ap.add_argument("--optuna", type=int, default=None, metavar="N", help="Optuna search of N trials instead of the grid")
    ap.add_argument("--embedding-dims", type=int, nargs="+", default=None, help="grid rows (default: by size)")
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="grid columns (default: by size)")
    ap.add_argument("--no-wandb", action="store_true", help="CSV logs only (logger=csv)")
    ap.add_argument("--out", type=Path, default=None, help="default: logs/recipes/jedi_sweep_<size>")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for every job (repeatable)")
    args = ap.parse_args(argv)
    out = (args.out or Path("logs") / "recipes" / f"jedi_sweep_{args.size}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    dims, widths = SIZES[args.size]["grid"]
    sweep_dir = out / ("optuna" if args.optuna else "grid")
    cmd = sweep_command(args.size, sweep_dir, args.launcher, args.optuna, args.embedding_dims or dims,
                        args.widths or widths, not args.no_wandb, args.override)
    print("$", " ".join(cmd), flush=True)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(out / "sweep.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        print(f"the multirun exited with {proc.returncode}; see {out / 'sweep.log'}", flush=True)
    records = collect(sweep_dir)
    print(write_table(records, out))
    write_heatmap(records, out)
    print(f"results: {out} (sweep.md, sweep.csv, figures/heatmap.png)")
    return out


if __name__ == "__main__":
    main()
