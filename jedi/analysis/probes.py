"""Embedding probes (spec jedi.md §8h): how much of the condition (and, for families with a number
per condition such as the frequency, of that number) the learned context embeddings carry.

- Logistic regression on standardised embeddings, stratified k-fold cross-validated predictions,
  scored by accuracy and balanced accuracy.
- Cross-validated ridge regression of the condition value on the embedding (R^2), when the dataset
  has ``condition_values``.
- The cross-validated probe and the cluster scores run on the embeddings inferred for every held-out
  trial of a seen condition (the test split's and the validation split's), so a per-trial table and
  a tied one (one row per condition, whose copies would cross-validate trivially) are scored alike;
  a per-trial table's training embeddings are probed too (``probes/train_*``).
- Label-free structure: k-means with one cluster per condition on the embeddings, scored against the
  conditions by the adjusted Rand index and normalised mutual information (scikit-learn).
- Transfer: the probe fitted on all training embeddings, scored on the embeddings inferred for
  held-out trials (``module.inferred["test"]``).
- A 2-D PCA plot of the embeddings coloured by condition.

Labels are read here only, never by training or inference; with one condition (a recordings file
without labels) the probes are skipped with a one-line note.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression, RidgeCV  # noqa: E402
from sklearn.metrics import (accuracy_score, adjusted_rand_score, balanced_accuracy_score,  # noqa: E402
                             normalized_mutual_info_score, r2_score)
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from jedi_rnn.data.trials import TrialSet, iter_batches  # noqa: E402

log = logging.getLogger(__name__)


def infer_split_embeddings(module, trials: TrialSet, batch_size: int = 256) -> torch.Tensor:
    """Embeddings (n, d) inferred for every trial of ``trials`` with the network frozen, as the test
    pass infers them (``model.infer.steps``)."""
    steps = getattr(module, "infer_cfg", {}).get("steps", 0)  # encoders embed without optimising
    return torch.cat([module.infer_embeddings(batch, steps).cpu()
                      for batch in iter_batches(trials, batch_size, module.device)])


def _classifier(max_iter: int, C: float):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def _regressor():
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


def classification_probe(embeddings: np.ndarray, labels: np.ndarray, n_splits: int = 5, seed: int = 0,
                         max_iter: int = 2000, C: float = 1.0) -> dict:
    """Cross-validated condition decoding from embeddings (n, d) with labels (n,).

    Classes with fewer than 2 samples are left out; the number of folds is lowered to the smallest
    class count if needed. Returns accuracy, balanced_accuracy, chance (1 / n_classes), n_classes.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, classes[counts >= 2])
    X, y = np.asarray(embeddings, np.float64)[keep], labels[keep]
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"embedding probe: need >= 2 conditions with >= 2 trials each, got {len(classes)}")
    folds = StratifiedKFold(n_splits=int(min(n_splits, counts.min())), shuffle=True, random_state=seed)
    pred = cross_val_predict(_classifier(max_iter, C), X, y, cv=folds)
    return {"accuracy": float(accuracy_score(y, pred)), "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "chance": 1.0 / len(classes), "n_classes": float(len(classes))}


def value_regression(embeddings: np.ndarray, values: np.ndarray, n_splits: int = 5, seed: int = 0) -> float:
    """Cross-validated R^2 of a ridge regression (alpha by inner CV) of values (n,) on embeddings (n, d)."""
    folds = KFold(n_splits=min(n_splits, len(values)), shuffle=True, random_state=seed)
    pred = cross_val_predict(_regressor(), np.asarray(embeddings, np.float64), np.asarray(values, np.float64), cv=folds)
    return float(r2_score(values, pred))


def plot_embedding_pca(embeddings: np.ndarray, labels: np.ndarray, names: list[str], path: Path,
                       extra: Optional[tuple[np.ndarray, np.ndarray]] = None) -> None:
    """Scatter of the first two principal components coloured by condition; ``extra`` (embeddings,
    labels) of held-out trials are drawn as crosses in the same projection."""
    pca = PCA(n_components=min(2, embeddings.shape[1])).fit(embeddings)
    proj = pca.transform(embeddings)
    if proj.shape[1] == 1:
        proj = np.concatenate([proj, np.zeros_like(proj)], 1)
    n = len(names)
    colors = plt.get_cmap("tab10").colors if n <= 10 else plt.get_cmap("turbo")(np.linspace(0.05, 0.95, n))
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(proj[sel, 0], proj[sel, 1], s=10, color=colors[int(c)], label=names[int(c)])
    if extra is not None:
        pe = pca.transform(extra[0])
        if pe.shape[1] == 1:
            pe = np.concatenate([pe, np.zeros_like(pe)], 1)
        for c in np.unique(extra[1]):
            sel = extra[1] == c
            ax.scatter(pe[sel, 0], pe[sel, 1], s=25, marker="x", color=colors[int(c)])
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}%)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}%)" if len(ev) > 1 else "PC2")
    ax.set_title("context embeddings (dots: train, x: inferred test)")
    if len(names) <= 25:
        ax.legend(fontsize=6, markerscale=1.5, ncol=1 + len(names) // 13, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cluster_agreement(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """How well unsupervised clusters of embeddings (n, d) match the conditions (n,): k-means with one
    cluster per condition present, scored by adjusted Rand index and normalised mutual information
    (1 for a perfect match, ARI about 0 for chance)."""
    k = len(np.unique(labels))
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(embeddings))
    return {"ari": float(adjusted_rand_score(labels, clusters)), "nmi": float(normalized_mutual_info_score(labels, clusters))}


def _probe_scores(E: np.ndarray, y: np.ndarray, prefix: str, n_splits: int, seed: int, max_iter: int, C: float) -> dict:
    """Cross-validated decoding and cluster agreement of one set of embeddings, keys ``probes/<prefix>*``."""
    out = {f"probes/{prefix}{k}": v for k, v in classification_probe(E, y, n_splits, seed, max_iter, C).items()}
    out.update({f"probes/{prefix}cluster_{k}": v for k, v in cluster_agreement(E, y, seed).items()})
    out[f"probes/{prefix}n_probed"] = float(len(y))
    return out


def analyze_embedding_probes(module, datamodule, out_dir: Path, n_splits: int = 5, seed: int = 0,
                             max_iter: int = 2000, C: float = 1.0) -> dict:
    """Probe the trained module's embeddings for their condition (and condition value).

    The cross-validated probe (probes/accuracy, probes/balanced_accuracy, probes/chance,
    probes/n_probed) and the cluster scores (probes/cluster_ari, probes/cluster_nmi) use the
    embeddings inferred for the test and validation trials (skipped before a test pass); a per-trial
    table adds the same on its training embeddings (probes/train_*, probes/train_value_r2). probes/test_accuracy and probes/test_value_r2 are the
    transfer of a probe fitted on the training embeddings to the test trials; probes/value_r2 the
    cross-validated regression of the condition value. Saves embedding_pca.png.
    """
    E = module.train_embeddings().detach().cpu().numpy()
    trials = datamodule.train_set
    y = trials.conditions.cpu().numpy()
    if E.shape[0] != y.shape[0]:
        raise ValueError(f"embedding probe: {E.shape[0]} train embeddings but {y.shape[0]} train trials")
    if len(np.unique(y)) < 2:
        log.info("embedding probes skipped: the training trials carry one condition (no labels to probe)")
        return {}
    values = trials.condition_values.cpu().numpy() if trials.condition_values is not None else None
    out = {}
    if getattr(getattr(module, "embeddings", None), "tie", "trial") == "trial":
        out.update(_probe_scores(E, y, "train_", n_splits, seed, max_iter, C))
        if values is not None:
            out["probes/train_value_r2"] = value_regression(E, values[y], n_splits, seed)
    test = getattr(module, "inferred", {}).get("test")
    if test is None:
        log.warning("embedding probes of inferred embeddings skipped: no embeddings inferred for the test trials")
        plot_embedding_pca(E, y, trials.condition_names, Path(out_dir) / "embedding_pca.png")
        return out
    val = datamodule.val_set
    E_cv = torch.cat([test.embeddings.cpu(), infer_split_embeddings(module, val)]).numpy()
    y_cv = torch.cat([test.conditions.cpu(), val.conditions.cpu()]).numpy()
    classes, counts = np.unique(y_cv, return_counts=True)
    if (counts >= 2).sum() < 2:  # too few trials to cross-validate (e.g. a debug-sized run)
        log.warning("embedding probes skipped: need >= 2 conditions with >= 2 trials each")
        return out
    out.update(_probe_scores(E_cv, y_cv, "", n_splits, seed, max_iter, C))
    Et, yt = test.embeddings.cpu().numpy(), test.conditions.cpu().numpy()
    seen = np.isin(yt, y)
    if seen.any():
        pred = _classifier(max_iter, C).fit(E, y).predict(Et[seen])
        out["probes/test_accuracy"] = float(accuracy_score(yt[seen], pred))
        out["probes/test_balanced_accuracy"] = float(balanced_accuracy_score(yt[seen], pred))
    if values is not None:
        out["probes/value_r2"] = value_regression(E_cv, values[y_cv], n_splits, seed)
        out["probes/test_value_r2"] = float(r2_score(values[yt], _regressor().fit(E, values[y]).predict(Et)))
    plot_embedding_pca(E, y, trials.condition_names, Path(out_dir) / "embedding_pca.png", (Et, yt))
    return out
