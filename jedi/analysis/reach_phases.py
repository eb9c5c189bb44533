"""Preparation vs execution dynamics of a JEDI model fitted to reach segments (paper Fig. 6).

Needs data cut by ``jedi_rnn.data.reach_phases.SplitAtEvent``: every training sample is one segment with
its own context c and ``extras["phase"]`` (0 = prep, 1 = exec). Per context:
- eigenvalues of the discrete update A(c) = (1 - a) I + a J(c) (a = dt / tau), relative to the unit
  circle. For the pure low-rank head only the R eigenvalues (1 - a) + a eig(V^T U / N) move with c
  (the other N - R equal 1 - a), so the statistics use those R; otherwise all N;
- the top Lyapunov exponents of the noise-free map (``jedi_rnn.dynamics.lyapunov``, QR method) from the
  module's initial state of that segment.
The paper reports execution eigenvalues near the unit circle and preparation eigenvalues inside it.
For simulated data with ``meta["teacher_eigs"]`` (the surrogate) the ground truth is drawn too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from jedi_rnn.analysis.plotting import analysis_array_path, plt, save_figure
from jedi_rnn.analysis.spectra import connectivity_eigenvalues, update_eigenvalues
from jedi_rnn.dynamics.lyapunov import lyapunov_spectrum
from jedi_rnn.dynamics.maps import TanhRNNMap
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights

PHASE_COLORS = ("tab:blue", "tab:red")


def moving_eigenvalues(weights: RecurrentWeights, alpha: float) -> Tensor:
    """Eigenvalues of A(c) that depend on the context: (C, R) for the pure low-rank head, else (C, N)."""
    eig_J = connectivity_eigenvalues(weights)  # (C, N) sorted by modulus; pure low rank: zeros after R
    if weights.U is not None and weights.base is None:
        eig_J = eig_J[:, :weights.U.shape[2]]
    return update_eigenvalues(eig_J, alpha)


def phase_summary(eig: Tensor, lyap_max: Tensor, tol: float) -> dict[str, float]:
    """Numbers for one phase from its contexts' eigenvalues (C, E) and top Lyapunov exponents (C,)."""
    mod = eig.abs()
    return {
        "radius_mean": float(mod.max(-1).values.mean()),
        "radius_std": float(mod.max(-1).values.std()) if len(mod) > 1 else 0.0,
        "modulus_mean": float(mod.mean()),
        "frac_near_unit_circle": float(((mod - 1.0).abs() <= tol).double().mean()),
        "frac_outside_unit_circle": float((mod > 1.0 + tol).double().mean()),
        "max_imag_mean": float(eig.imag.abs().max(-1).values.mean()),
        "lyap_max_mean": float(lyap_max.mean()),
        "lyap_max_std": float(lyap_max.std()) if len(lyap_max) > 1 else 0.0,
    }


def _plot(eigs: list[np.ndarray], lyap: list[np.ndarray], names: list[str], tol: float, path: Path,
          teacher: Optional[np.ndarray] = None) -> Path:
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    circle = np.linspace(0, 2 * np.pi, 400)
    for p, (ax, eig) in enumerate(zip(axes[:2], eigs)):
        ax.scatter(eig.real.ravel(), eig.imag.ravel(), s=6, alpha=0.5, color=PHASE_COLORS[p], linewidths=0)
        if teacher is not None:  # ground truth of a simulated data set (the surrogate's latent update)
            ax.scatter(teacher[p].real, teacher[p].imag, marker="x", s=40, color="k", label="teacher")
            ax.legend(frameon=False, fontsize=7, loc="upper left")
        ax.plot(np.cos(circle), np.sin(circle), "k--", lw=0.8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set(xlabel="Re λ", ylabel="Im λ", title=f"{names[p]}: eig A(c), {eig.shape[0]} contexts")
    bins = np.linspace(min(np.abs(e).min() for e in eigs) - 0.02, max(np.abs(e).max() for e in eigs) + 0.02, 40)
    for p, eig in enumerate(eigs):
        axes[2].hist(np.abs(eig).ravel(), bins=bins, alpha=0.5, density=True, color=PHASE_COLORS[p], label=names[p])
    axes[2].axvspan(1 - tol, 1 + tol, color="0.85", zorder=0)
    axes[2].axvline(1.0, color="k", lw=0.8)
    axes[2].set(xlabel="|λ|", ylabel="density", title="|λ| per phase (grey: within tol of 1)")
    axes[2].legend(frameon=False)
    axes[3].boxplot(list(lyap))
    axes[3].set_xticks(range(1, len(names) + 1), list(names))
    axes[3].axhline(0, color="k", lw=0.6)
    axes[3].set(ylabel="λ_max (1/s)", title="largest Lyapunov exponent")
    fig.tight_layout()
    return save_figure(fig, path)


def analyze_reach_phases(module, datamodule, out_dir: Path, circle_tol: float = 0.05, max_contexts: int = 200,
                         n_exponents: int = 3, burn_in: int = 200, n_steps: int = 500, seed: int = 0) -> dict:
    """Eigenvalue and Lyapunov statistics per reach phase over the training segments' contexts.

    Returns ``reach/<phase>_<stat>`` (stats of ``phase_summary``), ``reach/n_contexts_<phase>`` and
    ``reach/exec_minus_prep_radius``; saves ``reach_phases.png`` and ``<run>/analysis/reach_phases.npz``.
    At most ``max_contexts`` contexts per phase (a seeded subsample).
    """
    train = datamodule.train_set
    if "phase" not in train.extras:
        raise ValueError("analyze_reach_phases: the training set has no extras['phase']; cut the trials with "
                         "data.transform=jedi_rnn.data.reach_phases.SplitAtEvent")
    phases = list(train.meta.get("phases", ["prep", "exec"]))
    gen = torch.Generator().manual_seed(seed)
    device = next(module.parameters()).device
    alpha, dt = float(module.rnn.alpha), float(module.rnn.dt)
    with torch.no_grad():
        emb = module.embeddings.per_trial(train.conditions.to(device))  # (n_train, d)
    out, eigs, lyaps, arrays = {}, [], [], {}
    for p, name in enumerate(phases):
        idx = torch.nonzero(train.extras["phase"] == p).flatten()
        if len(idx) == 0:
            raise ValueError(f"analyze_reach_phases: no training segment of phase {name!r}")
        if len(idx) > max_contexts:
            idx = idx[torch.randperm(len(idx), generator=gen)[:max_contexts]].sort().values
        c = emb[idx.to(device)]
        with torch.no_grad():
            weights = module.weights_for(c)
            x0 = module.initial_state(c, train.data[idx].to(device))
        eig = moving_eigenvalues(weights, alpha).cpu()
        F = TanhRNNMap.from_weights(weights, alpha)
        lyap = lyapunov_spectrum(F, x0, dt, n_exponents, burn_in, n_steps, generator=gen).exponents[:, 0].cpu()
        out.update({f"reach/{name}_{k}": v for k, v in phase_summary(eig, lyap, circle_tol).items()})
        out[f"reach/n_contexts_{name}"] = float(len(idx))
        eigs.append(eig.numpy())
        lyaps.append(lyap.double().numpy())
        arrays.update({f"{name}_eigenvalues": eig.numpy(), f"{name}_lyap_max": lyap.numpy(),
                       f"{name}_train_rows": idx.numpy()})
    out["reach/exec_minus_prep_radius"] = out[f"reach/{phases[1]}_radius_mean"] - out[f"reach/{phases[0]}_radius_mean"]
    teacher = train.meta.get("teacher_eigs")
    _plot(eigs, lyaps, phases, circle_tol, Path(out_dir) / "reach_phases.png",
          None if teacher is None else np.asarray(teacher))
    np.savez(analysis_array_path(out_dir, "reach_phases"), alpha=np.array(alpha), dt=np.array(dt), **arrays)
    return out
