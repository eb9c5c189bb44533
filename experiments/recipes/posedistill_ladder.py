"""PoseDistill ablation ladder (paper Table 5) and baselines on the synthetic benchmark.

    python -m experiments.recipes.posedistill_ladder [--size tiny|small|paper] [--out DIR] [--seeds 12345 1 2]

Each row is one run of the framework entry (``python -m experiments.train experiment=...``) in
its own directory; the stage cache (``paths.cache_dir``) makes the shared stages A–D train once.
Rows: source only → +contrastive (L_LCR + L_HCR; also the "contrastive only"/Ours-LL baseline)
→ +pose-flip → +flip-backward → +slow-backward (the full method), then pseudo-label
self-training, DANN and the oracle (target labels); then, not the paper's method, AdaBN rows on a
BatchNorm G^s (its own source-only row, AdaBN alone, AdaBN + the full method). Every adaptation row sees the same batches
(the relation rows take one round robin of their energies per batch). ``--jobs N`` runs N rows at
a time once the first row has trained the stages. ``--seeds S ...`` runs every row once per stage-E
seed (``model.seed``: the adaptation's own randomness, e.g. its positives' augmentations; the data,
the batches and the cached stages A–D stay the same) and reports the mean and the standard deviation
over seeds, so that a rung's step can be read against stage E's run-to-run spread. Writes
``ladder.md``, ``ladder.csv``, ``checks.md`` (the claims the issue asks for, each PASS/FAIL as
measured) and ``figures/`` (predicted vs true skeletons, PA-MPJPE bars).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from posedistill.skeleton import PAPER17  # noqa: E402

METRICS = ("test/mpjpe", "test/mpjpe_gtbones", "test/pa_mpjpe", "test/n_mpjpe", "test/pck", "test/auc",
           "test/pose_spread_ratio")
# size → experiment-file suffix: small = the demo size, paper = the benchmark size
SIZES = {"tiny": "_demo", "small": "_demo", "paper": ""}
# overrides that shrink the demo to a smoke run of the recipe (--size tiny; numbers meaningless)
TINY = [
    "stages.prior.trainer.max_steps=40", "stages.motion.trainer.max_steps=10", "stages.relations.trainer.max_steps=10",
    "stages.prior.trainer.val_check_interval=20", "stages.motion.trainer.val_check_interval=10",
    "stages.relations.trainer.val_check_interval=10", "stages.source.data.n_frames=256",
    "stages.source.trainer.max_epochs=1", "stages.source.trainer.check_val_every_n_epoch=1",
    "data.n_clips=16", "data.test_clips=4", "data.val_clips=2", "stages.source.data.test_clips=4",
    "stages.source.data.val_clips=2", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2",
]
# source only: G = G^s (no energy, no update). No trainer override here: the stages inherit the
# main trainer config (merged under their own), and this first row is the one that trains them.
SOURCE_ONLY = ["model.energies=[]"]


# G^s with BatchNorm (instead of GroupNorm): the AdaBN rows re-estimate its statistics on the target
BN_SOURCE = ["stages.source.model.encoder.norm=batch"]


@dataclass
class Row:
    name: str
    experiment: str
    overrides: list[str] = field(default_factory=list)
    ladder: bool = False
    baseline: str = "source only"  # the row whose PA-MPJPE the ratio column divides by (same G^s)

    def stage_overrides(self) -> tuple[str, ...]:
        """The overrides that change the shared stages A–D (rows sharing them share the cache)."""
        return tuple(o for o in self.overrides if o.startswith("stages."))


def rows() -> list[Row]:
    e = "energies"
    return [
        Row("source only", "synthetic_adapt", SOURCE_ONLY, ladder=True),
        Row("+ contrastive (L_CR)", "synthetic_adapt", [f"model.{e}=[lcr,hcr]"], ladder=True),
        Row("+ pose-flip (L^z_1)", "synthetic_adapt", [f"model.{e}=[lcr,hcr,flip]"], ladder=True),
        Row("+ flip-backward (L^v_1)", "synthetic_adapt", [f"model.{e}=[lcr,hcr,flip,flip_backward]"], ladder=True),
        Row("+ slow-backward (L^v_2, full)", "synthetic_adapt", [], ladder=True),
        Row("pseudo-label self-training", "synthetic_pseudo_label"),
        Row("DANN (feature adversarial)", "synthetic_dann"),
        Row("oracle (target labels)", "synthetic_oracle"),
        # not the paper's method: AdaBN (Li et al. 2016), a cheap domain-adaptation step, needs a G^s
        # with BatchNorm, so these rows have their own source-only row (ratios are to that row)
        Row("source only, BatchNorm G^s", "synthetic_adapt", [*BN_SOURCE, *SOURCE_ONLY],
            baseline="source only, BatchNorm G^s"),
        Row("AdaBN (target BatchNorm statistics only)", "synthetic_adapt",
            [*BN_SOURCE, *SOURCE_ONLY, "model.adapt_norm_stats=true"], baseline="source only, BatchNorm G^s"),
        Row("AdaBN + full method", "synthetic_adapt", [*BN_SOURCE, "model.adapt_norm_stats=true"],
            baseline="source only, BatchNorm G^s"),
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def run_dir_of(out: Path, row: Row, seed: int | None) -> Path:
    return out / "runs" / (slug(row.name) + ("" if seed is None else f"_seed{seed}"))


def run_one(row: Row, size: str, out: Path, cache_dir: Path, extra: list[str], seed: int | None = None) -> dict:
    """Launch one run through the framework entry (stage-E seed ``seed``, None: the config's);
    returns its metrics.json."""
    suffix = SIZES[size]
    run_dir = run_dir_of(out, row, seed)
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists() and json.loads(metrics_file.read_text()).get("status") == "completed":
        return json.loads(metrics_file.read_text())
    cmd = [
        sys.executable, "-m", "experiments.train", f"experiment=posedistill/{row.experiment}{suffix}",
        "logger=csv", f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}", "extras.print_config=false",
        "++trainer.enable_checkpointing=true", *(TINY if size == "tiny" else []), *row.overrides, *extra,
        *([] if seed is None else [f"model.seed={seed}"]),
    ]
    print("$", " ".join(cmd), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "recipe.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    if not metrics_file.exists():
        return {"status": "failed", "error": f"exit {proc.returncode}; see {run_dir / 'recipe.log'}"}
    return json.loads(metrics_file.read_text())


def seed_mean(runs: list[dict], key: str) -> float | None:
    """Mean of ``key`` over a row's runs (one per seed); None unless every run has it."""
    vals = [m.get(key) for m in runs]
    return None if not vals or None in vals else float(np.mean(vals))


def seed_sd(runs: list[dict], key: str) -> float | None:
    """Sample standard deviation of ``key`` over a row's runs; None for fewer than two."""
    vals = [m.get(key) for m in runs]
    return None if len(vals) < 2 or None in vals else float(np.std(vals, ddof=1))


def write_tables(results: list[tuple[Row, list[dict]]], out: Path) -> None:
    """ladder.md / ladder.csv: per row the seed means of METRICS, the PA-MPJPE sd over seeds, the
    ratio of mean PA-MPJPE to the row's baseline and the runs' statuses."""
    pa = {row.name: seed_mean(runs, "test/pa_mpjpe") for row, runs in results}
    header = ["method", *[m.split("/", 1)[1] for m in METRICS], "pa_mpjpe sd over seeds", "seeds",
              "PA-MPJPE / source-only", "status"]
    table = []
    for row, runs in results:
        vals = [seed_mean(runs, k) for k in METRICS]
        src, own = pa.get(row.baseline), pa[row.name]
        ratio = own / src if src and own is not None else None
        status = ",".join(sorted({m.get("status", "?") for m in runs}))
        table.append([row.name, *vals, seed_sd(runs, "test/pa_mpjpe"), len(runs), ratio, status])
    with open(out / "ladder.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(table)
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) and v < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v)))  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in table]
    lines += ["", "Errors in mm on the synthetic target test clips (MPJPE root-aligned; *_gtbones: predicted",
              "bones rescaled to ground-truth lengths); PCK@150 mm and AUC(0:5:150) in %. pose_spread_ratio:",
              "RMS distance of the predicted poses to their mean over that of the true poses (well below 1: G",
              "collapses towards one pose). Paper (Table 5, S→H, submission) ratio full / source-only:",
              "86.8 / 209.6 = 0.41. The ratio column divides by",
              "the source-only row of the same G^s (the BatchNorm rows by 'source only, BatchNorm G^s').",
              "With several seeds every number is the mean over seeds (sd: sample standard deviation)."]
    (out / "ladder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_checks(results: list[tuple[Row, list[dict]]], out: Path) -> None:
    """The issue's claims, evaluated on the measured seed means (no tuning of the evaluation); with
    several seeds a step also says whether it exceeds the seeds' spread (the two rows' sds combined)."""
    pa = {row.name: seed_mean(runs, "test/pa_mpjpe") for row, runs in results}
    sd = {row.name: seed_sd(runs, "test/pa_mpjpe") for row, runs in results}
    ladder = [pa[row.name] for row, _ in results if row.ladder]
    names = [row.name for row, _ in results]
    full, src = pa[names[4]], pa[names[0]]
    lines = ["| claim | measured | result |", "|---|---|---|"]

    def check(claim: str, measured: str, ok) -> None:
        lines.append(f"| {claim} | {measured} | {'n/a' if ok is None else ('PASS' if ok else 'FAIL')} |")

    have = all(v is not None for v in ladder)
    mm = lambda v: "–" if v is None else f"{v:.1f} mm"  # noqa: E731

    def step(a: str, b: str) -> str:
        """'a vs b' in mm, with a's gain over b against the combined seed sd when both rows have one."""
        text = f"{mm(pa.get(a))} vs {mm(pa.get(b))}"
        if None in (sd.get(a), sd.get(b), pa.get(a), pa.get(b)):
            return text
        spread = float(np.hypot(sd[a], sd[b]))
        return f"{text} (gain {pa[b] - pa[a]:+.1f} mm, seed sd {spread:.1f} mm)"
    check("full PA-MPJPE ≤ 0.6 × source-only", f"{mm(full)} vs 0.6 × {mm(src)}", (full <= 0.6 * src) if have else None)
    for i in range(1, len(ladder)):
        check(f"'{names[i]}' improves on '{names[i - 1]}'", step(names[i], names[i - 1]),
              (ladder[i] < ladder[i - 1]) if have else None)
    for other in (names[1], names[5]):
        o = pa.get(other)
        check(f"full beats '{other}'", step(names[4], other), (full < o) if full is not None and o is not None else None)
    bn_src, adabn, adabn_full = (pa.get(n) for n in ("source only, BatchNorm G^s", "AdaBN (target BatchNorm statistics only)",
                                                      "AdaBN + full method"))
    if None not in (bn_src, adabn, adabn_full):  # not the claims: the AdaBN rows (BatchNorm G^s)
        check("(AdaBN rows) AdaBN + full PA-MPJPE ≤ 0.6 × source-only (BatchNorm G^s)",
              f"{mm(adabn_full)} vs 0.6 × {mm(bn_src)}", adabn_full <= 0.6 * bn_src)
        check("(AdaBN rows) AdaBN alone improves on source-only (BatchNorm G^s)", f"{mm(adabn)} vs {mm(bn_src)}", adabn < bn_src)
        check("(AdaBN rows) AdaBN + full improves on AdaBN alone", f"{mm(adabn_full)} vs {mm(adabn)}", adabn_full < adabn)
    (out / "checks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _draw(ax, pose: np.ndarray, colour: str) -> None:
    """Front view of a camera-frame pose (x right, y down)."""
    for p, c in PAPER17.bones:
        ax.plot(pose[[p, c], 0], -pose[[p, c], 1], color=colour, lw=1.5)


def write_figures(results: list[tuple[Row, list[dict]]], out: Path, seeds: list[int | None], n: int = 4) -> None:
    """figures/skeletons.png (the first seed's test frames) and figures/pa_mpjpe.png (seed means)."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    shown = [(row, run_dir_of(out, row, seeds[0]) / "test_examples.npz") for row, _ in results]
    shown = [(row, f) for row, f in shown if f.exists()]
    if shown:
        fig, axes = plt.subplots(len(shown), n, figsize=(2 * n, 2 * len(shown)), squeeze=False)
        for i, (row, f) in enumerate(shown):
            ex = np.load(f)
            idx = np.linspace(0, len(ex["true"]) - 1, n).astype(int)
            for j, k in enumerate(idx):
                ax = axes[i, j]
                _draw(ax, ex["true"][k], "black")
                _draw(ax, ex["pred"][k], "tab:red")
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
            axes[i, 0].set_ylabel(row.name, fontsize=7)
        fig.suptitle("test frames: ground truth (black) vs prediction (red)", fontsize=9)
        fig.tight_layout()
        fig.savefig(fig_dir / "skeletons.png", dpi=120)
        plt.close(fig)
    vals = [(row.name, seed_mean(runs, "test/pa_mpjpe")) for row, runs in results]
    vals = [v for v in vals if v[1] is not None]
    if vals:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.barh([v[0] for v in vals][::-1], [v[1] for v in vals][::-1], color="tab:blue")
        ax.set_xlabel("PA-MPJPE (mm) on synthetic target test")
        fig.tight_layout()
        fig.savefig(fig_dir / "pa_mpjpe.png", dpi=120)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--out", type=Path, default=None, help="default: logs/recipes/posedistill_ladder_<size>")
    ap.add_argument("--cache-dir", type=Path, default=None, help="stage cache; default: the framework's paths.cache_dir")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time after the first (which trains the stages)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                    help="stage-E seeds (model.seed), one run per row and seed; default: the config's seed only")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for every run, e.g. trainer.accelerator=gpu (repeatable)")
    args = ap.parse_args(argv)
    out = (args.out or Path("logs") / "recipes" / f"posedistill_ladder_{args.size}").resolve()
    cache = (args.cache_dir or Path(os.environ.get("DATA_DIR", "data")) / "cache").resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds: list[int | None] = args.seeds or [None]
    todo = [(row, s) for row in rows() for s in seeds]
    # the first run of every stage variant (the plain G^s, the BatchNorm G^s) trains (or reuses) the shared
    # stages A–D, one after the other; the other runs then only load them
    done: dict[tuple[str, int | None], dict] = {}
    for row, s in todo:
        if row.stage_overrides() not in {r.stage_overrides() for r, t in todo if (r.name, t) in done}:
            done[(row.name, s)] = run_one(row, args.size, out, cache, args.override, s)
    rest = [(r, s) for r, s in todo if (r.name, s) not in done]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        metrics = pool.map(lambda rs: run_one(rs[0], args.size, out, cache, args.override, rs[1]), rest)
        done.update(zip([(r.name, s) for r, s in rest], metrics))
    results = [(row, [done[(row.name, s)] for s in seeds]) for row in rows()]
    (out / "results.json").write_text(json.dumps(
        {row.name: {str(s if s is not None else "config"): m for s, m in zip(seeds, runs)} for row, runs in results},
        indent=2))
    write_tables(results, out)
    write_checks(results, out)
    write_figures(results, out, seeds)
    print(f"wrote {out}/ladder.md, ladder.csv, checks.md, figures/")


if __name__ == "__main__":
    main()
