"""Fixed points of a trained JEDI student at every training condition: the batched finder
(``jedi_rnn.dynamics.fixed_points``) on the student's map, a PCA plot and the Jacobian spectra."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jedi_rnn.analysis.plotting import analysis_array_path, condition_colors, plt, save_figure
from jedi_rnn.analysis.spectra import plot_fixed_point_spectra
from jedi_rnn.analysis.student import student_contexts, student_initial_states
from jedi_rnn.dynamics.fixed_points import FinderOptions, FixedPointResult, find_fixed_points, sample_initial_states
from jedi_rnn.dynamics.rate_rnn import unroll


def _plot_fixed_points(traj: Tensor, result: FixedPointResult, names: list, fixed_q: float, path: Path) -> Path:
    """One panel per condition: trajectories and fixed points in the top-2 PCs of all trajectories
    (filled: stable fixed point, hollow: unstable, grey x: slow point with q > fixed_q)."""
    C, N = traj.shape[0], traj.shape[-1]
    flat = traj.reshape(-1, N)
    mean = flat.mean(0)
    _, _, Vt = torch.linalg.svd(flat - mean, full_matrices=False)
    P = Vt[:2].T  # (N, 2)
    cols = min(C, 4)
    rows = -(-C // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for c in range(rows * cols):
        ax = axes[c // cols][c % cols]
        if c >= C:
            ax.axis("off")
            continue
        for tr in ((traj[c] - mean) @ P)[:8]:
            ax.plot(tr[:, 0], tr[:, 1], color="0.75", lw=0.6)
        fp = result.contexts[c]
        if fp.n:
            z = (fp.xstar.cpu() - mean) @ P
            is_fixed = fp.q.cpu() <= fixed_q
            st = fp.stable.cpu() if fp.stable is not None else torch.zeros(fp.n, dtype=torch.bool)
            ax.scatter(z[is_fixed & st, 0], z[is_fixed & st, 1], s=30, color="C0", label="stable")
            ax.scatter(z[is_fixed & ~st, 0], z[is_fixed & ~st, 1], s=30, facecolors="none", edgecolors="C3",
                       label="unstable")
            ax.scatter(z[~is_fixed, 0], z[~is_fixed, 1], s=12, marker="x", color="0.4", label="slow")
        ax.set_title(str(names[c]), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=6, frameon=False, loc="lower left")
    fig.suptitle("fixed points (PC1-PC2 of the student's trajectories)")
    return save_figure(fig, path)


def analyze_student_fixed_points(module, datamodule, out_dir: Path, n_inits: int = 256, noise_std: float = 0.1,
                                 n_trials: int = 8, fixed_q: float = 1e-10, fast_path: bool = True, seed: int = 0,
                                 **finder) -> dict:
    """Fixed points of the student at every training condition (mean training embedding per condition).

    Initial states: ``n_inits`` states per condition drawn from noise-free rollouts of ``n_trials``
    training trials of that condition (from the module's own x_0), plus N(0, noise_std^2) noise.
    ``finder`` holds ``FinderOptions`` fields (e.g. max_iters, dtype). A unique point counts as a
    fixed point if q <= fixed_q, else as a slow point. Returns ``fixed_points/...`` numbers; saves
    ``fixed_points.png``, ``fixed_point_spectra.png`` and ``<run>/analysis/fixed_points.npz``.
    """
    opts = FinderOptions(**dict(finder))
    gen = torch.Generator().manual_seed(seed)
    ctx = student_contexts(module, datamodule)
    x0 = student_initial_states(module, datamodule, ctx, n_trials, gen)
    traj = unroll(ctx.map.weights, x0, ctx.alpha, datamodule.train_set.data.shape[1] - 1)  # (C, n_trials, T, N)
    inits = sample_initial_states(traj.flatten(1, 2), n_inits, noise_std, gen)
    result = find_fixed_points(ctx.map, inits, opts, fast_path=fast_path)

    n_fixed, n_stable, n_slow, q_all = [], [], [], []
    for fp in result.contexts:
        is_fixed = fp.q <= fixed_q
        n_fixed.append(int(is_fixed.sum()))
        n_stable.append(int((is_fixed & fp.stable).sum()) if fp.stable is not None else 0)
        n_slow.append(int((~is_fixed).sum()))
        q_all.append(fp.q.cpu())
    q_all = torch.cat(q_all)
    numbers = {
        "fixed_points/n_fixed_mean": float(np.mean(n_fixed)),
        "fixed_points/n_stable_mean": float(np.mean(n_stable)),
        "fixed_points/n_unstable_mean": float(np.mean(n_fixed) - np.mean(n_stable)),
        "fixed_points/n_slow_mean": float(np.mean(n_slow)),
        "fixed_points/frac_converged": float(result.converged.double().mean()),
        "fixed_points/q_median": float(q_all.median()) if len(q_all) else float("nan"),
    }
    out_dir = Path(out_dir)
    values = ctx.values.double().numpy() if ctx.values is not None else None
    _plot_fixed_points(traj.cpu(), result, ctx.names, fixed_q, out_dir / "fixed_points.png")
    if opts.compute_jacobians:
        plot_fixed_point_spectra([fp.eigenvalues[fp.q <= fixed_q].cpu().numpy() for fp in result.contexts],
                                 [fp.stable[fp.q <= fixed_q].cpu().numpy() for fp in result.contexts],
                                 ctx.names, condition_colors(len(ctx.names), values),
                                 out_dir / "fixed_point_spectra.png")
    arrays = {**result.padded(), "condition_ids": ctx.condition_ids.numpy(), "condition_names": np.array(ctx.names),
              "n_fixed": np.array(n_fixed), "n_stable": np.array(n_stable), "fixed_q": np.array(fixed_q),
              "alpha": np.array(ctx.alpha)}
    if values is not None:
        arrays["condition_values"] = values
    np.savez(analysis_array_path(out_dir, "fixed_points"), **arrays)
    return numbers
