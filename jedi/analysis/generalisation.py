"""Generalisation (spec jedi.md §8h): reconstruction R^2 on held-out trials of seen conditions next to
R^2 on trials of held-out (never trained) conditions, pooled and per condition.

Both use embeddings inferred with the hypernetwork frozen (``module.inferred`` after
``trainer.test``); per-condition scores re-run the student from those embeddings.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from jedi_rnn.data.trials import TrialSet, iter_batches  # noqa: E402
from jedi_rnn.metrics.r2 import VarianceWeightedR2  # noqa: E402

SPLITS = {"test": "test_set", "heldout_cond": "heldout_set"}


def per_condition_r2(module, trials: TrialSet, embeddings: torch.Tensor, batch_size: int = 256) -> dict[int, float]:
    """Variance-weighted R^2 per condition of the student's prediction from ``embeddings`` (n, d),
    one per trial of ``trials`` in order."""
    if embeddings.shape[0] != len(trials):
        raise ValueError(f"generalisation: {embeddings.shape[0]} inferred embeddings for {len(trials)} trials")
    metrics = {int(c): VarianceWeightedR2(trials.data.shape[2]) for c in torch.unique(trials.conditions)}
    with torch.no_grad():
        for batch in iter_batches(trials, batch_size, module.device):
            pred = module.predict(embeddings[batch.index.cpu()].to(module.device), batch).cpu()
            condition, data = batch.condition.cpu(), batch.data.cpu()
            for c in torch.unique(condition):
                sel = condition == c
                metrics[int(c)].update(pred[sel], data[sel])
    return {c: float(m.compute()) for c, m in metrics.items()}


def plot_generalisation(scores: dict[str, dict[str, float]], path: Path) -> None:
    """Bars of per-condition R^2, seen conditions (held-out trials) and held-out conditions."""
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * sum(len(v) for v in scores.values()) + 2), 4))
    x0, ticks, labels = 0, [], []
    for split, color in (("test", "tab:blue"), ("heldout_cond", "tab:orange")):
        per = scores.get(split, {})
        if not per:
            continue
        xs = np.arange(x0, x0 + len(per))
        ax.bar(xs, list(per.values()), color=color,
               label="held-out trials, seen conditions" if split == "test" else "held-out conditions")
        ticks += xs.tolist()
        labels += list(per.keys())
        x0 += len(per) + 1
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylabel("R$^2$ (variance weighted)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def analyze_generalisation(module, datamodule, out_dir: Path) -> dict:
    """R^2 of seen vs held-out conditions side by side.

    Returns generalisation/r2_seen, generalisation/r2_heldout_cond (NaN without held-out
    conditions), generalisation/gap (= seen - held-out), generalisation/r2/<condition> per
    condition, and the per-condition means *_condition_mean with their gap (pooled R^2 counts the
    variance between conditions, so a split with a single held-out condition scores lower even at
    equal fit; the per-condition means compare like with like); saves generalisation.png.
    """
    inferred = getattr(module, "inferred", {})
    if "test" not in inferred:
        raise ValueError("generalisation: module.inferred has no 'test' split; run trainer.test first")
    names = datamodule.full_set.condition_names
    scores: dict[str, dict[str, float]] = {}
    for split, attr in SPLITS.items():
        if split in inferred:
            per = per_condition_r2(module, getattr(datamodule, attr), inferred[split].embeddings)
            scores[split] = {names[c]: r for c, r in sorted(per.items())}
    seen = inferred["test"].r2
    held = inferred["heldout_cond"].r2 if "heldout_cond" in inferred else float("nan")
    out = {"generalisation/r2_seen": float(seen), "generalisation/r2_heldout_cond": float(held),
           "generalisation/gap": float(seen - held)}
    # like for like: each condition scored against its own variance, then averaged per split
    per_seen = np.mean(list(scores["test"].values()))
    per_held = np.mean(list(scores["heldout_cond"].values())) if "heldout_cond" in scores else float("nan")
    out.update({"generalisation/r2_seen_condition_mean": float(per_seen),
                "generalisation/r2_heldout_cond_condition_mean": float(per_held),
                "generalisation/gap_condition_mean": float(per_seen - per_held)})
    for per in scores.values():
        out.update({f"generalisation/r2/{name}": r for name, r in per.items()})
    plot_generalisation(scores, Path(out_dir) / "generalisation.png")
    return out
