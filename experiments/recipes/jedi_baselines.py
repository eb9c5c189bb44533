"""JEDI against its baselines on the multi-frequency and multi-task teachers (spec jedi.md §8i).

    python -m experiments.recipes.jedi_baselines [--size tiny|small|paper] [--launcher local|parallel|slurm]
                                                  [--jobs N] [--ablations] [--seeds S ...] [--out DIR]

Every row is one run of the train config (`experiment=jedi/<teacher> size=<size> model=jedi/<model>
...`) in `<out>/runs/<teacher>/<model>/`, all launched as one Hydra multirun (experiments.recipes.launch),
on the same data, splits and metrics. All runs share the W&B group `jedi_baselines`; the report run
of that group holds the tables and figures. The multi-task teacher's conditions are (task,
frequency) pairs on one shared input channel and one pair (`sawtooth@3Hz`) is held out, so that both
teachers have a held-out-condition score that tests the dynamics. Analyses are cut to the two the
table needs (embedding probes, generalisation); the shared RNN has no embedding, so no probe.

Writes into `<out>` (printed at the end): `table.md`, `table.csv` (held-out-trial R^2, held-out-
condition R^2, condition classification accuracy, parameter count, training time, status and error of
every run), `checks.md` (JEDI vs the shared RNN and the VAE, PASS/FAIL as measured) and
`figures/{r2,accuracy}.png`. A failed run is a row with its error; the others go on. `--seeds` runs
every row once per seed (`seed=S`, in `.../<model>/seed_<S>/`): table.md shows mean ± standard
deviation over seeds, table.csv one line per run, and a check passes only if JEDI wins at every seed
(paired by seed). Sizes are the run sizes of configs/size/jedi/{multifreq,multitask}/.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.glue.sizes import size_table  # noqa: E402
from experiments.recipes import report  # noqa: E402
from experiments.recipes.launch import LAUNCHERS, Job, launch  # noqa: E402
from experiments.recipes.report import Check, Run, Table  # noqa: E402

GROUP = "jedi_baselines"
SIZES = ["tiny", "small", "paper"]
TEACHERS = {
    "multifreq": [],
    # sixteen (task, frequency) conditions on one shared input channel; the held-out condition is one
    # pair: sawtooth at 3 Hz, a waveform seen at 2, 4, 5 Hz and a frequency seen on the other tasks
    "multitask": ["data.source.shared_channel=true", "data.source.tasks=[sine,square,sawtooth,two_tone]",
                  "data.source.task_frequencies=[2,3,4,5]", "data.source.trials_per_condition=20",
                  "data.heldout_conditions=[sawtooth@3Hz]"],
}
# the table needs probes and generalisation; the dynamics analyses are JEDI's own experiments
TABLE_ANALYSES = ["~analysis.spectra", "~analysis.fixed_points", "~analysis.lyapunov"]
# the VAEs have no auto-decoder and hence none of the inference settings a size may set
NO_INFER = {"vae", "rnn_vae"}
# every run: no config print, no progress bar (the runs' output goes to one log)
QUIET = ["extras.print_config=false", "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar"]
COLUMNS = [
    ("R2 held-out trials", "test/r2"),
    ("R2 held-out conditions", "test/r2_heldout_cond"),
    ("R2 held-out cond. (per-cond. mean)", "analysis/generalisation/r2_heldout_cond_condition_mean"),
    ("cond. accuracy (CV)", "analysis/probes/accuracy"),
    ("cond. accuracy (train -> held-out)", "analysis/probes/test_accuracy"),
    ("chance", "analysis/probes/chance"),
    ("parameters", "model/params_total"),
    ("fit time (s)", "time/fit_s"),
]
NOTES = [
    "R^2: variance-weighted, on held-out trials of seen conditions and on trials of held-out conditions",
    "(multifreq: 3 and 7 Hz; multitask: sawtooth at 3 Hz), after embedding inference with the network frozen",
    "(VAEs: encoder posterior mean; per-condition RNN: best-fitting seen condition's network; shared RNN:",
    "nothing to infer). The per-condition mean scores each held-out condition against its own variance.",
    "Condition accuracy: logistic-regression probe on the embeddings, 5-fold CV (models whose training",
    "embeddings are one per condition are cross-validated on the embeddings inferred for held-out trials);",
    "train -> held-out: fitted on training embeddings, scored on those inferred for held-out trials. The",
    "shared RNN has no embedding (–; chance in the next column). Fit time: wall seconds of trainer.fit.",
]


@dataclass
class Row:
    """One model of the table: its model config (None: the experiment's own JEDI) and the overrides it
    needs."""

    name: str
    model: Optional[str]
    overrides: list[str] = field(default_factory=list)
    has_embedding: bool = True

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name.lower()).strip("_")


def rows(ablations: bool = False) -> list[Row]:
    out = [
        Row("JEDI", None),
        Row("shared RNN", "shared_rnn", has_embedding=False),
        Row("per-condition RNN", "per_condition_rnn"),
        Row("context-input RNN", "context_input_rnn"),
        Row("VAE", "vae"),
        Row("RNN-VAE", "rnn_vae"),
    ]
    if ablations:
        out += [
            Row("JEDI full-rank head", "jedi_fullrank"),
            *[Row(f"JEDI rank {r}", None, [f"model.hypernet.rank={r}"]) for r in (1, 2, 10, 20)],
            Row("JEDI + base matrix", "jedi_lowrank_base"),
            Row("JEDI per-condition table (labelled)", None, ["model.embedding_tie=condition", "model.embedding_init=random"]),
            Row("JEDI random table init", None, ["model.embedding_init=random"]),
        ]
    return out


def job(teacher: str, row: Row, size: str, seed: Optional[int], wandb: bool, extra: Sequence[str] = ()) -> Job:
    """The run of one row on one teacher (and seed): its directory name and train-config overrides."""
    infer = "infer" in size_table(f"jedi/{teacher}", size).get("model", {})
    overrides = [
        f"experiment=jedi/{teacher}", f"size={size}", *([f"model=jedi/{row.model}"] if row.model else []),
        *(["~model.infer"] if row.model in NO_INFER and infer else []),
        *row.overrides, *TEACHERS[teacher], *TABLE_ANALYSES, *([] if row.has_embedding else ["~analysis.probes"]),
        *QUIET, *([f"logger.wandb.group={GROUP}"] if wandb else ["logger=csv"]), *extra,
        *([] if seed is None else [f"seed={seed}"]),
    ]
    return Job(f"{teacher}/{row.slug}" + ("" if seed is None else f"/seed_{seed}"), tuple(overrides))


Results = list[tuple[str, Row, list[Run]]]  # (teacher, row, its runs: one per seed)


def cell(runs: Sequence[Run], key: str) -> str:
    """A column's value over seeds: the mean (parameters as an integer, times in seconds), with ± the
    standard deviation for R^2 and accuracies."""
    m = report.mean(runs, key)
    if m is None:
        return "–"
    text = f"{int(m):,}" if key == "model/params_total" else report.fmt(m, 0 if key.startswith("time/") else 3)
    spread = report.sd(runs, key)
    return text + (f" ± {spread:.3f}" if spread is not None and not key.startswith(("time/", "model/")) else "")


def write_tables(results: Results, out: Path, size: str) -> tuple[Table, Table]:
    """table.md (a row per model and teacher: means, ± sd over seeds) and table.csv (a line per run);
    returns both tables (the summary's values are the means)."""
    header = ["teacher", "model", *[c for c, _ in COLUMNS], "status", "error"]
    seeds = sorted({r.get("seed") for _, _, runs in results for r in runs if r.get("seed") is not None})
    many = max((len(runs) for _, _, runs in results), default=1) > 1
    notes = [f"Size `{size}`.", *NOTES, *([f"Seeds {seeds}: mean ± standard deviation."] if many else [])]
    summary = Table("table", header,
                    [[t, row.name, *[report.mean(runs, k) for _, k in COLUMNS], report.status(runs),
                      report.errors(runs)] for t, row, runs in results],
                    cells=[[t, row.name, *[cell(runs, k) for _, k in COLUMNS], report.status(runs),
                            report.errors(runs)] for t, row, runs in results], notes=notes)
    per_run = Table("runs", header[:2] + ["seed"] + header[2:],
                    [[t, row.name, r.get("seed"), *[r.get(k) for _, k in COLUMNS], r.get("status"), r.get("error")]
                     for t, row, runs in results for r in runs])
    report.write_csv(per_run, out / "table.csv")
    (out / "table.md").write_text(summary.markdown())
    return summary, per_run


def _paired_wins(jedi: Sequence[Run], other: Sequence[Run], key: str, at_chance: bool) -> list[bool]:
    """Per seed (runs paired in order): does JEDI beat the other model on `key`? A model without an
    embedding (`at_chance`) scores the probe's chance."""
    wins = []
    for j, o in zip(jedi, other):
        a = report.values([j], key)
        b = report.values([o], key) or (report.values([j], "analysis/probes/chance") if at_chance else [])
        if a and b:
            wins.append(a[0] > b[0])
    return wins


def write_checks(results: Results, out: Path) -> Table:
    """checks.md: the issue's claim per teacher, JEDI beats the shared RNN and the VAE on held-out-
    condition R^2 and on classification accuracy (a model without an embedding is at chance). With
    several seeds the runs are paired by seed and a claim passes only if JEDI wins at every seed
    (n/a when a run did not finish)."""
    by = {(t, r.name): runs for t, r, runs in results}
    lines = []
    for teacher in TEACHERS:
        jedi = by.get((teacher, "JEDI"))
        for name in ("shared RNN", "VAE"):
            other = by.get((teacher, name))
            if jedi is None or other is None:
                continue
            for label, key in (("held-out-condition R^2", "test/r2_heldout_cond"),
                               ("condition accuracy (CV)", "analysis/probes/accuracy")):
                at_chance = name == "shared RNN" and key == "analysis/probes/accuracy"
                wins = _paired_wins(jedi, other, key, at_chance)
                theirs = report.mean(other, key)
                if theirs is None and at_chance:
                    theirs = report.mean(jedi, "analysis/probes/chance")
                check = Check(f"JEDI beats {name} on {label}",
                              f"{report.fmt(report.mean(jedi, key))} vs {report.fmt(theirs)}",
                              None if len(wins) < len(jedi) else all(wins))
                lines.append([teacher, check.claim, check.measured, f"{sum(wins)}/{len(jedi)}", check.verdict])
    table = Table("checks", ["teacher", "claim", "measured (mean)", "seeds won", "result"], lines)
    report.write_table(table, out)
    return table


def write_figures(results: Results, out: Path) -> list[Path]:
    """figures/r2.png and figures/accuracy.png: one panel per teacher, a bar per model (seed means)."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    teachers = [t for t in TEACHERS if any(r[0] == t for r in results)]
    paths = []
    for fname, keys, ylabel in (
            ("r2.png", [("held-out trials", "test/r2"), ("held-out conditions", "test/r2_heldout_cond")], "R$^2$"),
            ("accuracy.png", [("CV", "analysis/probes/accuracy"), ("train -> held-out", "analysis/probes/test_accuracy")],
             "condition accuracy")):
        fig, axes = plt.subplots(1, len(teachers), figsize=(6 * len(teachers), 3.8), squeeze=False)
        for ax, teacher in zip(axes[0], teachers):
            sel = [(row, runs) for t, row, runs in results if t == teacher]
            x = np.arange(len(sel))
            for i, (label, key) in enumerate(keys):
                vals = [report.mean([r for r in runs if r.completed], key) for _, runs in sel]
                ax.bar(x + (i - 0.5) * 0.38, [np.nan if v is None else v for v in vals], width=0.38, label=label)
            chance = [report.mean(runs, "analysis/probes/chance") for _, runs in sel]
            if fname == "accuracy.png" and any(c is not None for c in chance):
                ax.axhline(next(c for c in chance if c is not None), color="k", ls="--", lw=0.8, label="chance")
            ax.set_xticks(x)
            ax.set_xticklabels([row.name for row, _ in sel], rotation=30, ha="right", fontsize=8)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(teacher)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(fig_dir / fname, dpi=120)
        plt.close(fig)
        paths.append(fig_dir / fname)
    return paths


def main(argv: Optional[list[str]] = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=SIZES, default="small")
    ap.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local",
                    help="Hydra launcher: local (basic; joblib with --jobs > 1), parallel (joblib), slurm (submitit)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (local/parallel; 1 CPU thread each)")
    ap.add_argument("--ablations", action="store_true", help="add JEDI ablation rows (full rank, ranks, base "
                    "matrix, per-trial table)")
    ap.add_argument("--teachers", nargs="+", choices=sorted(TEACHERS), default=list(TEACHERS))
    ap.add_argument("--no-wandb", action="store_true", help="CSV logs only (logger=csv), no report in W&B")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="run every row once per seed (mean ± sd; checks paired by seed); default: the config's seed")
    ap.add_argument("--out", type=Path, default=None, help="default: logs/recipes/jedi_baselines_<size>")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for every run, e.g. trainer=gpu (repeatable)")
    args = ap.parse_args(argv)
    out = (args.out or Path("logs") / "recipes" / f"jedi_baselines_{args.size}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or [None]  # None: the config's seed, one run per row
    plan = [(t, row, [job(t, row, args.size, s, not args.no_wandb, args.override) for s in seeds])
            for t in args.teachers for row in rows(args.ablations)]
    launch([j for _, _, jobs in plan for j in jobs], out, args.launcher, args.jobs)
    runs = report.collect([j for _, _, jobs in plan for j in jobs], out)
    results = [(t, row, [_with_seed(runs[j.name], s) for j, s in zip(jobs, seeds)]) for t, row, jobs in plan]
    summary, per_run = write_tables(results, out, args.size)
    check_table = write_checks(results, out)
    print(summary.markdown() + "\n" + check_table.markdown())
    figures = write_figures(results, out)
    if not args.no_wandb:
        report.log_to_wandb(GROUP, out, [summary, per_run, check_table], figures)
    print(f"results: {out} (table.md, table.csv, checks.md, figures/)")
    return out


def _with_seed(run: Run, seed: Optional[int]) -> Run:
    return Run(run.name, {**run.metrics, "seed": seed}) if seed is not None else run


if __name__ == "__main__":
    main()
