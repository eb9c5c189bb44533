"""Fixed-point recovery (spec jedi.md §8h): do the student's fixed points under J(c) sit where the
task-trained teacher's are?

Per condition, the student's map is built from the condition's mean embedding (training trials; for
held-out conditions, the mean inferred embedding) and searched with the batched finder from the
condition's recorded frames, as the teacher's ground truth was (``meta["teacher_fixed_points"]``,
searched from the same states under the condition's input). The sets are matched in rate space
(tanh x) with the Hungarian algorithm; sets of different sizes match min(n_student, n_teacher) pairs,
so a ring or line of slow points is compared as a set (each student point with its nearest teacher
point). Distances are divided by the spread of the teacher's recorded rates (RMS distance to their
mean); stability agreement counts the matched pairs closer than ``match_radius`` spreads (genuine
correspondences). Points are counted as connected sets (linked when closer than ``link_radius``
spreads), so a slow line sampled by many finder runs counts once. Per condition: the numbers of
(stable) sets, whether the stable counts agree, the fraction of the teacher's stable sets that a
student stable point lies within ``match_radius`` of, and how close the condition's recordings come
to the teacher's stable points (a student can only place its points where the data show the flow
stopping), and the slowest decay time of the stable points of each (``stable_timescale``): a memory
held on a slow manifold forgets a perturbation over seconds, a point attractor within a few steps,
though both can sit at the same place. Means over all conditions and over each group of
``condition_groups`` (e.g. the MemoryPro epochs).
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
from scipy.sparse import csr_matrix  # noqa: E402
from scipy.sparse.csgraph import connected_components  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from jedi_rnn.analysis.plotting import analysis_array_path  # noqa: E402
from jedi_rnn.analysis.student import check_module, heldout_contexts, student_contexts  # noqa: E402
from jedi_rnn.data.task_recordings import teacher_fixed_points  # noqa: E402
from jedi_rnn.dynamics.fixed_points import (ContextFixedPoints, FinderOptions, find_fixed_points,  # noqa: E402
                                            sample_initial_states)
from jedi_rnn.dynamics.maps import TanhRNNMap  # noqa: E402


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


def components(points: np.ndarray, radius: float) -> np.ndarray:
    """Labels (n,) of the connected sets of points (n, N) when points closer than ``radius`` are
    linked (single linkage): a line or ring of slow points sampled by many finder runs is one set."""
    if len(points) == 0:
        return np.zeros(0, int)
    linked = np.linalg.norm(points[:, None] - points[None], axis=-1) < radius
    return connected_components(csr_matrix(linked), directed=False)[1]


def recovered_fraction(student: np.ndarray, teacher: np.ndarray, radius: float, link_radius: float) -> float:
    """Fraction of the teacher's connected sets of points (``components`` at ``link_radius``) that
    some student point lies within ``radius`` of (NaN without teacher points)."""
    if len(teacher) == 0:
        return float("nan")
    labels = components(teacher, link_radius)
    if len(student) == 0:
        return 0.0
    near = np.linalg.norm(teacher[:, None] - student[None], axis=-1).min(1) < radius  # (n_teacher,)
    return float(np.mean([near[labels == k].any() for k in np.unique(labels)]))


def condition_metrics(student: np.ndarray, student_stable: np.ndarray, teacher: np.ndarray,
                      teacher_stable: np.ndarray, spread: float, radius: float, link_radius: float) -> dict:
    """``compare_sets`` plus the numbers of connected sets (``components`` at ``link_radius``) of all
    and of the stable points, whether the stable counts agree (1/0), the fraction of the teacher's
    stable sets recovered by a student stable point (within ``radius``), and whether both hold for
    every set (stable_structure_match, 1/0: same count, each teacher attractor has a student one)."""
    def count(pts: np.ndarray) -> float:
        return float(len(np.unique(components(pts, link_radius))))

    out = compare_sets(student, student_stable, teacher, teacher_stable, spread, radius)
    n_s, n_t = count(student[student_stable]), count(teacher[teacher_stable])
    recovered = recovered_fraction(student[student_stable], teacher[teacher_stable], radius, link_radius)
    out.update({"n_student": count(student), "n_teacher": count(teacher), "n_student_stable": n_s,
                "n_teacher_stable": n_t, "stable_count_match": float(n_s == n_t),
                "stable_recovered_fraction": recovered,
                "stable_structure_match": float(n_s == n_t and (n_t == 0 or recovered == 1.0))})
    return out


def stable_timescale(eigenvalues: np.ndarray, stable: np.ndarray, dt: float) -> float:
    """Median over the stable points of their slowest decay time in seconds, -dt / ln|lambda_max|,
    from the eigenvalues (n, k) of the discrete update's Jacobian at each point, sorted by |lambda|
    descending; NaN without stable points (or without stored eigenvalues, k = 0)."""
    eig = np.asarray(eigenvalues)[np.asarray(stable, bool)]
    if eig.size == 0:
        return float("nan")
    return float(np.median(-dt / np.log(np.abs(eig[:, 0]))))


def data_distance(points: np.ndarray, frames: np.ndarray, spread: float) -> float:
    """Mean over points (n, N) of the distance to the nearest recorded frame (M, N), in spreads: how
    close the recordings come to them (NaN without points)."""
    if len(points) == 0:
        return float("nan")
    return float(np.mean([np.linalg.norm(frames - p, axis=1).min() for p in points]) / spread)


def _finite_mean(values: list[float]) -> float:
    """Mean over the finite values (NaN if there are none)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _valid_frames(data: torch.Tensor) -> torch.Tensor:
    """The frames of data (n, T, N) without NaN, as (M, N)."""
    frames = data.reshape(-1, data.shape[-1])
    return frames[~torch.isnan(frames).any(1)]


def rate_spread(data: torch.Tensor) -> float:
    """RMS distance of the valid frames of data (n, T, N) to their mean frame."""
    frames = _valid_frames(data).double()
    return float((frames - frames.mean(0)).square().sum(1).mean().sqrt())


def _search_starts(frames: torch.Tensor, n_inits: int, init_noise: float, gen: torch.Generator) -> torch.Tensor:
    """(n_inits, N) initial states drawn from recorded rate frames (M, N) mapped to states, x = atanh(rates)."""
    states = torch.atanh(frames.double().clamp(-0.999, 0.999))
    return sample_initial_states(states[None], n_inits, init_noise, gen)[0]


def student_condition_fixed_points(module, datamodule, n_inits: int, init_noise: float, options: FinderOptions,
                                   seed: int) -> list[tuple[int, object]]:
    """(condition id, ContextFixedPoints) of the student at every condition: training conditions at
    their mean training embedding, held-out ones at their mean inferred embedding. Each search
    starts from the condition's recorded frames mapped to states, x = atanh(rates)."""
    full = datamodule.full_set
    gen = torch.Generator().manual_seed(seed)
    out = []
    for ctx in (student_contexts(module, datamodule), heldout_contexts(module, datamodule)):
        if ctx is None:
            continue
        starts = [_search_starts(_valid_frames(full.data[full.conditions == k]), n_inits, init_noise, gen)
                  for k in ctx.condition_ids.tolist()]
        found = find_fixed_points(ctx.map.to(device=torch.device("cpu")), torch.stack(starts), options)
        out += list(zip(ctx.condition_ids.tolist(), found.contexts))
    return out


def student_trial_fixed_points(module, datamodule, n_inits: int, init_noise: float, options: FinderOptions,
                               seed: int) -> list[tuple[int, object]]:
    """(condition id, ContextFixedPoints) per condition, pooled over its trials: each training trial's
    own embedding (held-out conditions: each trial's inferred embedding) gives one map, searched from
    that trial's recorded frames with ``n_inits`` starts. The mean embedding of trials that end in
    different attractors lies between them, and so does its map's attractor; each trial's own map
    does not average them away."""
    gen = torch.Generator().manual_seed(seed)
    device = next(module.parameters()).device
    train = datamodule.train_set
    with torch.no_grad():
        sets = [(train, module.embeddings.per_trial(train.conditions.to(device)))]
    held = getattr(module, "inferred", {}).get("heldout_cond")
    if held is not None and len(held.embeddings):
        sets.append((datamodule.heldout_set, held.embeddings.to(device)))
    pooled: dict[int, list] = {}
    for trials, emb in sets:
        with torch.no_grad():
            F = TanhRNNMap.from_weights(module.weights_for(emb), module.rnn.alpha).to(dtype=torch.float64)
        starts = torch.stack([_search_starts(_valid_frames(trials.data[i:i + 1]), n_inits, init_noise, gen)
                              for i in range(len(trials))])  # (n_trials, n_inits, N)
        found = find_fixed_points(F.to(device=torch.device("cpu")), starts, options)
        for k, fp in zip(trials.conditions.tolist(), found.contexts):
            pooled.setdefault(k, []).append(fp)
    return [(k, _concat_fixed_points(fps)) for k, fps in sorted(pooled.items())]


def _concat_fixed_points(fps: list) -> ContextFixedPoints:
    """One ContextFixedPoints holding the points of several (init indices are not kept)."""
    return ContextFixedPoints(xstar=torch.cat([f.xstar for f in fps]), q=torch.cat([f.q for f in fps]),
                              init_index=torch.full((sum(f.n for f in fps),), -1),
                              eigenvalues=torch.cat([f.eigenvalues for f in fps]),
                              stable=torch.cat([f.stable for f in fps]))


STUDENT_VIEWS = {"condition_mean": student_condition_fixed_points, "trial": student_trial_fixed_points}


def plot_recovery(teacher_sets: dict, student_sets: dict, frames: dict, data: torch.Tensor, path: Path) -> None:
    """Teacher (circles) and student (crosses) fixed points per condition in the 2-D PCA of all
    recorded rates, over the condition's own frames; filled = stable. Sets map name -> (points, stable)."""
    pca = PCA(n_components=2).fit(_valid_frames(data).numpy())
    names = list(teacher_sets)
    ncols = min(5, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    styles = {"teacher": ("o", "tab:blue"), "student": ("x", "tab:red")}
    for ax, name in zip(axes.flat, names):
        bg = pca.transform(frames[name][:: max(1, len(frames[name]) // 1000)])
        ax.scatter(bg[:, 0], bg[:, 1], s=1, color="0.8", label="recorded rates")
        for who, (pts, stable) in (("teacher", teacher_sets[name]), ("student", student_sets[name])):
            if not len(pts):
                continue
            marker, color = styles[who]
            p = pca.transform(pts)
            ax.scatter(p[stable, 0], p[stable, 1], marker=marker, color=color, s=30, label=f"{who} stable")
            unstable = {"facecolors": "none", "edgecolors": color} if marker == "o" else {"color": "tab:orange"}
            ax.scatter(p[~stable, 0], p[~stable, 1], marker=marker, s=30, label=f"{who} unstable", **unstable)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=5)
    fig.supxlabel("PC1 of recorded rates")
    fig.supylabel("PC2")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def analyze_fixed_point_recovery(module, datamodule, out_dir: Path, n_inits: int = 128, init_noise: float = 0.1,
                                 match_radius: float = 0.1, link_radius: float = 0.0, seed: int = 0,
                                 max_iters: int = 3000, max_q: Optional[float] = 1e-4,
                                 teacher_max_q: Optional[float] = 1e-4, finder: Optional[dict] = None,
                                 condition_groups: Optional[dict] = None, student: str = "condition_mean") -> dict:
    """Match the student's fixed points per condition to the teacher's.

    ``student``: ``condition_mean`` searches the map at each condition's mean embedding from the
    condition's frames (``n_inits`` starts); ``trial`` pools, per condition, the maps of its trials'
    own embeddings, each searched from its trial's frames (``n_inits`` starts per trial).
    ``max_q`` / ``teacher_max_q`` keep only (slow) points with q below them; ``match_radius`` and
    ``link_radius`` (counting connected sets) are in spreads; ``condition_groups`` maps a group name
    to the prefix of its condition names. Returns, as means over conditions (``recovery/<key>``) and
    over each group's conditions (``recovery/<group>/<key>``): n_student_fp, n_teacher_fp,
    n_student_stable, n_teacher_stable (numbers of connected sets), stable_count_match,
    stable_structure_match, matched_distance,
    stable_matched_distance, close_fraction, stability_agreement, stable_recovered_fraction,
    teacher_stable_timescale_s, student_stable_timescale_s (``stable_timescale``) and their ratio
    stable_timescale_ratio (student / teacher), teacher_stable_data_distance (how close the
    condition's recordings come to the teacher's stable points, in spreads); plus recovery/spread and
    the teacher's task performance on the recorded trials (recovery/teacher/<key>, e.g.
    response_error_deg, where the recordings carry it). Saves
    fixed_point_recovery.png and the per-condition values in analysis/fixed_point_recovery.npz
    (``conditions`` and one array per key).
    """
    full = datamodule.full_set
    names = full.condition_names
    spread = rate_spread(full.data)
    opts = FinderOptions(max_iters=max_iters, max_q=max_q, **(finder or {}))
    if getattr(module, "readout", None) is not None:
        raise ValueError("fixed-point recovery needs one student unit per neuron (model.latent_dim=null)")
    check_module(module)
    if student not in STUDENT_VIEWS:
        raise ValueError(f"analysis.recovery.student must be one of {list(STUDENT_VIEWS)}, got {student!r}")
    found = STUDENT_VIEWS[student](module, datamodule, n_inits, init_noise, opts, seed)
    per, teacher_sets, student_sets, frames = {}, {}, {}, {}
    for c, ctx in sorted(found, key=lambda item: item[0]):
        name = names[c]
        t = teacher_fixed_points(full.meta, name)
        keep = t["q"] <= teacher_max_q if teacher_max_q is not None else np.ones(len(t["q"]), bool)
        teacher_sets[name] = (t["rates"][keep], t["stable"][keep])
        student_sets[name] = (np.tanh(ctx.xstar.numpy()), ctx.stable.numpy().astype(bool))
        per[name] = condition_metrics(*student_sets[name], *teacher_sets[name], spread, match_radius * spread,
                                      link_radius * spread)
        tau_t = stable_timescale(t["eigenvalues"][keep], teacher_sets[name][1], full.dt)
        tau_s = stable_timescale(ctx.eigenvalues.numpy(), student_sets[name][1], full.dt)
        per[name].update({"teacher_stable_timescale_s": tau_t, "student_stable_timescale_s": tau_s,
                          "stable_timescale_ratio": tau_s / tau_t if tau_t > 0 else float("nan")})
        frames[name] = _valid_frames(full.data[full.conditions == c]).numpy()
        per[name]["teacher_stable_data_distance"] = data_distance(teacher_sets[name][0][teacher_sets[name][1]],
                                                                  frames[name], spread)
    names_out = {"n_student": "n_student_fp", "n_teacher": "n_teacher_fp"}
    keys = next(iter(per.values())).keys()
    groups = {"": list(per)}
    for group, prefix in (condition_groups or {}).items():
        groups[f"{group}/"] = [n for n in per if n.startswith(prefix)]
    out = {}
    for group, members in groups.items():
        for k in keys:
            out[f"recovery/{group}{names_out.get(k, k)}"] = _finite_mean([per[n][k] for n in members])
    out["recovery/spread"] = spread
    for k, v in (full.meta.get("teacher_performance") or {}).items():  # is the ground truth a working teacher?
        out[f"recovery/teacher/{k}"] = float(v)
    np.savez(analysis_array_path(out_dir, "fixed_point_recovery"), conditions=np.asarray(list(per)),
             **{k: np.asarray([per[n][k] for n in per]) for k in keys})
    plot_recovery(teacher_sets, student_sets, frames, full.data, Path(out_dir) / "fixed_point_recovery.png")
    return out
