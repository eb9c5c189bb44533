"""Fixed-point recovery (spec jedi.md §8h): do the student's fixed points under J(c) sit where the
task-trained teacher's are?

Per condition, the student's map is built from the condition's mean embedding (training trials; for
held-out conditions, the mean inferred embedding) and searched with the batched finder. Its fixed
points are matched to the teacher's (``meta["teacher_fixed_points"]``) in rate space (tanh x) with
the Hungarian algorithm; sets of different sizes match min(n_student, n_teacher) pairs, so ring
attractors of slow points are compared as sets. Distances are divided by the spread of the teacher's
recorded rates (RMS distance to their mean); stability agreement counts the matched pairs closer than
``match_radius`` spreads (genuine correspondences), since sets searched from different initial
states need not contain the same saddles. Conditions sharing one teacher input (e.g. all
flip-flop patterns) are also pooled: the fraction of the teacher's stable points that some student
stable point of the group lies within ``match_radius`` spreads of, after Hungarian matching.
Unit-per-neuron mode only (neuron identity is preserved, no alignment is needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from jedi.analysis.fixed_points import FinderOptions, find_fixed_points, sample_initial_states  # noqa: E402
from jedi.analysis.student import heldout_contexts, student_contexts  # noqa: E402
from jedi.data.task_recordings import teacher_fixed_points  # noqa: E402


def hungarian_match(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-total-distance matching of point sets a (n, N) and b (m, N) (Euclidean); returns
    row indices into a, column indices into b (min(n, m) pairs) and the matched distances."""
    if len(a) == 0 or len(b) == 0:
        empty = np.zeros(0, int)
        return empty, empty, np.zeros(0)
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols, cost[rows, cols]


def compare_sets(student: np.ndarray, student_stable: np.ndarray, teacher: np.ndarray,
                 teacher_stable: np.ndarray, spread: float, radius: float) -> dict:
    """Hungarian comparison of two fixed-point sets in rate space.

    Returns n_student, n_teacher; matched_distance (mean matched distance / spread; NaN if either set
    is empty); close_fraction (fraction of matched pairs closer than ``radius``, i.e. genuine
    correspondences); stability_agreement (fraction of those close pairs with the same stability;
    NaN without any); stable_matched_distance (matched distance between the stable points only).
    """
    student_stable, teacher_stable = np.asarray(student_stable, bool), np.asarray(teacher_stable, bool)
    rows, cols, dist = hungarian_match(student, teacher)
    close = dist < radius
    agree = student_stable[rows][close] == teacher_stable[cols][close]
    _, _, dist_stable = hungarian_match(student[student_stable], teacher[teacher_stable])
    nan = float("nan")
    return {"n_student": float(len(student)), "n_teacher": float(len(teacher)),
            "matched_distance": float(dist.mean() / spread) if len(dist) else nan,
            "close_fraction": float(close.mean()) if len(dist) else nan,
            "stability_agreement": float(agree.mean()) if len(agree) else nan,
            "stable_matched_distance": float(dist_stable.mean() / spread) if len(dist_stable) else nan}


def recovered_fraction(student: np.ndarray, teacher: np.ndarray, radius: float) -> float:
    """Fraction of teacher points matched (Hungarian) to a student point closer than ``radius``."""
    if len(teacher) == 0:
        return float("nan")
    _, _, dist = hungarian_match(student, teacher)
    return float((dist < radius).sum() / len(teacher))


def _finite_mean(values: list[float]) -> float:
    """Mean over the finite values (NaN if there are none)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def rate_spread(data: torch.Tensor) -> float:
    """RMS distance of the valid frames of data (n, T, N) to their mean frame."""
    frames = data.reshape(-1, data.shape[-1])
    frames = frames[~torch.isnan(frames).any(1)].double()
    return float((frames - frames.mean(0)).square().sum(1).mean().sqrt())


def student_condition_fixed_points(module, datamodule, n_inits: int, init_noise: float, options: FinderOptions,
                                   seed: int) -> list[tuple[int, object]]:
    """(condition id, ContextFixedPoints) of the student at every condition: training conditions at
    their mean training embedding, held-out ones at their mean inferred embedding. Each search
    starts from the condition's recorded frames mapped to states, x = atanh(rates)."""
    if getattr(module, "readout", None) is not None:
        raise ValueError("fixed-point recovery needs one student unit per neuron (model.latent_dim=null)")
    full = datamodule.full_set
    gen = torch.Generator().manual_seed(seed)
    out = []
    for ctx in (student_contexts(module, datamodule), heldout_contexts(module, datamodule)):
        if ctx is None:
            continue
        starts = []
        for k in ctx.condition_ids.tolist():
            frames = full.data[full.conditions == k].reshape(-1, full.data.shape[-1])  # (trials*T, N)
            frames = frames[~torch.isnan(frames).any(1)].double()
            states = torch.atanh(frames.clamp(-0.999, 0.999))
            starts.append(sample_initial_states(states[None], n_inits, init_noise, gen)[0])
        found = find_fixed_points(ctx.map.to(device=torch.device("cpu")), torch.stack(starts), options)
        out += list(zip(ctx.condition_ids.tolist(), found.contexts))
    return out


def plot_recovery(teacher_sets: dict, student_sets: dict, data: torch.Tensor, path: Path) -> None:
    """Teacher (circles) and student (crosses) fixed points per input group in the 2-D PCA of the
    teacher's recorded rates; filled = stable."""
    frames = data.reshape(-1, data.shape[-1])
    frames = frames[~torch.isnan(frames).any(1)].numpy()
    pca = PCA(n_components=2).fit(frames)
    groups = sorted(teacher_sets)
    ncols = min(5, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.5 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    styles = {"teacher": ("o", "tab:blue"), "student": ("x", "tab:red")}
    for ax, g in zip(axes.flat, groups):
        bg = pca.transform(frames[:: max(1, len(frames) // 2000)])
        ax.scatter(bg[:, 0], bg[:, 1], s=1, color="0.85", label="recorded rates")
        for who, (pts, stable) in (("teacher", teacher_sets[g]), ("student", student_sets[g])):
            if not len(pts):
                continue
            marker, color = styles[who]
            p = pca.transform(pts)
            ax.scatter(p[stable, 0], p[stable, 1], marker=marker, color=color, s=30, label=f"{who} stable")
            unstable = {"facecolors": "none", "edgecolors": color} if marker == "o" else {"color": "tab:orange"}
            ax.scatter(p[~stable, 0], p[~stable, 1], marker=marker, s=30, label=f"{who} unstable", **unstable)
        ax.set_title(f"input group {g}", fontsize=9)
        ax.set_xlabel("PC1 of recorded rates")
        ax.set_ylabel("PC2")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def analyze_fixed_point_recovery(module, datamodule, out_dir: Path, n_inits: int = 128, init_noise: float = 0.1,
                                 match_radius: float = 0.1, seed: int = 0, max_iters: int = 3000,
                                 max_q: Optional[float] = 1e-4, teacher_max_q: Optional[float] = 1e-4,
                                 finder: Optional[dict] = None) -> dict:
    """Match the student's fixed points per condition to the teacher's.

    ``max_q`` / ``teacher_max_q`` keep only (slow) points with q below them. Returns
    recovery/n_student_fp, recovery/n_teacher_fp (means over conditions),
    recovery/matched_distance (mean over conditions of mean matched distance / spread),
    recovery/stable_matched_distance (stable points only), recovery/close_fraction (matched pairs
    within ``match_radius`` spreads), recovery/stability_agreement (among those close pairs),
    recovery/stable_recovered_fraction (pooled per input group, averaged), recovery/spread; saves
    fixed_point_recovery.png.
    """
    full = datamodule.full_set
    names = full.condition_names
    spread = rate_spread(full.data)
    opts = FinderOptions(max_iters=max_iters, max_q=max_q, **(finder or {}))
    found = student_condition_fixed_points(module, datamodule, n_inits, init_noise, opts, seed)
    per, teacher_sets, student_sets = [], {}, {}
    for c, ctx in found:
        t = teacher_fixed_points(full.meta, names[c])
        keep = t["q"] <= teacher_max_q if teacher_max_q is not None else np.ones(len(t["q"]), bool)
        s_rates = np.tanh(ctx.xstar.numpy())
        s_stable = ctx.stable.numpy().astype(bool)
        per.append(compare_sets(s_rates, s_stable, t["rates"][keep], t["stable"][keep], spread, match_radius * spread))
        teacher_sets[t["group"]] = (t["rates"][keep], t["stable"][keep])
        prev = student_sets.get(t["group"], (np.zeros((0, s_rates.shape[1])), np.zeros(0, bool)))
        student_sets[t["group"]] = (np.concatenate([prev[0], s_rates]), np.concatenate([prev[1], s_stable]))
    fractions = [recovered_fraction(student_sets[g][0][student_sets[g][1]], pts[stable], match_radius * spread)
                 for g, (pts, stable) in teacher_sets.items()]
    names_out = {"n_student": "n_student_fp", "n_teacher": "n_teacher_fp"}
    out = {f"recovery/{names_out.get(k, k)}": _finite_mean([p[k] for p in per]) for k in per[0]}
    out["recovery/stable_recovered_fraction"] = _finite_mean(fractions)
    out["recovery/spread"] = spread
    plot_recovery(teacher_sets, student_sets, full.data, Path(out_dir) / "fixed_point_recovery.png")
    return out
