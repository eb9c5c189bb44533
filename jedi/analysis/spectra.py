"""Eigenspectra of the student's per-condition dynamics.

Three views per condition (spec jedi.md §8h):
- eig J(c), the continuous-time view (the origin is unstable past Re lambda = 1);
- eig A(c) = (1 - a) I + a J(c), the discrete update at the origin, drawn with the unit circle;
- eig DF(x*) at each fixed point (from ``fixed_points``; drawn by ``plot_fixed_point_spectra``).
Summary numbers per condition: spectral radius, max |Im lambda|, fraction within 0.05 of |lambda| = 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from jedi_rnn.analysis.plotting import (analysis_array_path, condition_colors, legend_outside, plot_eigenvalues,
                                    plt, save_figure)
from jedi_rnn.analysis.student import heldout_contexts, student_contexts
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights


def sort_by_modulus(eig: Tensor) -> Tensor:
    """Eigenvalues sorted by |lambda| descending along the last axis."""
    return torch.gather(eig, -1, torch.argsort(eig.abs(), dim=-1, descending=True, stable=True))


def connectivity_eigenvalues(weights: RecurrentWeights) -> Tensor:
    """eig J(c) for every context, (C, N) complex128 sorted by modulus.

    Pure low rank (no base matrix): the R nonzero eigenvalues of U V^T / N are those of V^T U / N
    (R x R), the other N - R are exactly 0. Otherwise eig of the dense matrix.
    """
    if weights.U is not None and weights.base is None:
        U, V = weights.U.detach().double(), weights.V.detach().double()
        C, N, R = U.shape
        small = torch.linalg.eigvals(V.transpose(1, 2) @ U / N)  # (C, R)
        eig = torch.cat([small, torch.zeros(C, N - R, dtype=small.dtype, device=small.device)], 1)
    else:
        eig = torch.linalg.eigvals(weights.dense().detach().double())
    return sort_by_modulus(eig)


def update_eigenvalues(eig_J: Tensor, alpha: float) -> Tensor:
    """eig A = (1 - a) + a eig J for A = (1 - a) I + a J (the Euler update's linearisation at 0)."""
    return (1.0 - alpha) + alpha * eig_J


def spectrum_summary(eig: Tensor, circle_tol: float = 0.05) -> dict:
    """Per context (C, N) -> dict of (C,) tensors: radius, max_imag, near_unit_circle (fraction of
    eigenvalues with ||lambda| - 1| <= circle_tol)."""
    mod = eig.abs()
    return {"radius": mod.max(-1).values, "max_imag": eig.imag.abs().max(-1).values,
            "near_unit_circle": ((mod - 1.0).abs() <= circle_tol).double().mean(-1)}


def plot_condition_spectra(eig_J: np.ndarray, eig_A: np.ndarray, names, colors, path: Path) -> Path:
    """Two panels: eig J(c) with the line Re = 1, eig A(c) with the unit circle; one colour per condition."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    plot_eigenvalues(axes[0], list(eig_J), names, colors, vline=1.0, title="eig J(c)")
    plot_eigenvalues(axes[1], list(eig_A), names, colors, unit_circle=True, title="eig A(c) = (1-α)I + αJ(c)")
    legend_outside(fig, axes[1])
    return save_figure(fig, path)


def plot_fixed_point_spectra(eigenvalues: list, stable: list, names, colors, path: Path) -> Path:
    """Jacobian eigenvalues at every fixed point of each condition (filled: stable point, hollow:
    unstable), with the unit circle."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for eig, st, name, color in zip(eigenvalues, stable, names, colors):
        eig, st = np.asarray(eig), np.asarray(st, bool)
        if eig.size == 0:
            continue
        for flag, face in ((True, color), (False, "none")):
            e = eig[st == flag].ravel()
            ax.scatter(e.real, e.imag, s=10, facecolors=face, edgecolors=color, linewidths=0.6,
                       label=name if flag == st.any() else None)
    plot_eigenvalues(ax, [], [], [], unit_circle=True, title="eig DF(x*) at fixed points")
    legend_outside(fig, ax)
    return save_figure(fig, path)


def analyze_spectra(module, datamodule, out_dir: Path, circle_tol: float = 0.05) -> dict:
    """Spectra of J(c) and A(c) for every training condition of a JediModule (and, after
    ``trainer.test``, every held-out condition, from its trials' inferred embeddings).

    Returns ``spectra/...`` numbers (means over training conditions of the per-condition summaries;
    for data with condition values also ``spectra/spearman_freq_imag``, Spearman rho between the
    condition value and max |Im eig J(c)|, and with held-out conditions ``spectra/heldout_*`` and
    ``spectra/spearman_freq_imag_all`` over all conditions); saves ``spectra.png`` (and
    ``spectra_imag_vs_value.png``) and ``<run>/analysis/spectra.npz``.
    """
    groups = {"train": student_contexts(module, datamodule)}
    held = heldout_contexts(module, datamodule)
    if held is not None:
        groups["heldout"] = held
    eig_J = {k: connectivity_eigenvalues(g.weights).cpu() for k, g in groups.items()}
    eig_A = {k: update_eigenvalues(e, groups[k].alpha) for k, e in eig_J.items()}
    sJ = {k: spectrum_summary(e, circle_tol) for k, e in eig_J.items()}
    sA = {k: spectrum_summary(e, circle_tol) for k, e in eig_A.items()}
    names = [n if k == "train" else f"{n} (held out)" for k, g in groups.items() for n in g.names]
    has_values = all(g.values is not None for g in groups.values())
    values = {k: g.values.double().numpy() for k, g in groups.items()} if has_values else None
    colors = condition_colors(len(names), np.concatenate(list(values.values())) if has_values else None)
    out_dir = Path(out_dir)
    plot_condition_spectra(np.concatenate([e.numpy() for e in eig_J.values()]),
                           np.concatenate([e.numpy() for e in eig_A.values()]), names, colors, out_dir / "spectra.png")
    numbers = {
        "spectra/radius_mean": float(sA["train"]["radius"].mean()),
        "spectra/radius_max": float(sA["train"]["radius"].max()),
        "spectra/near_unit_circle_mean": float(sA["train"]["near_unit_circle"].mean()),
        "spectra/J_radius_mean": float(sJ["train"]["radius"].mean()),
        "spectra/J_max_imag_mean": float(sJ["train"]["max_imag"].mean()),
        "spectra/J_max_real_mean": float(eig_J["train"].real.max(-1).values.mean()),
    }
    if held is not None:
        numbers["spectra/heldout_radius_mean"] = float(sA["heldout"]["radius"].mean())
        numbers["spectra/heldout_J_max_imag_mean"] = float(sJ["heldout"]["max_imag"].mean())
    if has_values and len(values["train"]) >= 3:
        rho, p = spearmanr(values["train"], sJ["train"]["max_imag"].numpy())
        numbers["spectra/spearman_freq_imag"] = float(rho)
        numbers["spectra/spearman_freq_imag_p"] = float(p)
        all_values = np.concatenate(list(values.values()))
        all_imag = np.concatenate([s["max_imag"].numpy() for s in sJ.values()])
        if held is not None:
            numbers["spectra/spearman_freq_imag_all"] = float(spearmanr(all_values, all_imag)[0])
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for k, marker in (("train", "o"), ("heldout", "x")):
            if k in groups:
                ax.scatter(values[k], sJ[k]["max_imag"].numpy(), marker=marker, color="k",
                           label="training conditions" if k == "train" else "held-out conditions")
        ax.set_xlabel("condition value")
        ax.set_ylabel("max |Im λ(J(c))|")
        ax.set_title(f"Spearman ρ (training conditions) = {rho:.2f}")
        ax.legend(fontsize=7, frameon=False)
        save_figure(fig, out_dir / "spectra_imag_vs_value.png")
    arrays = {}
    for k, g in groups.items():
        prefix = "" if k == "train" else "heldout_"
        arrays.update({f"{prefix}eig_J": eig_J[k].numpy(), f"{prefix}eig_A": eig_A[k].numpy(),
                       f"{prefix}condition_ids": g.condition_ids.cpu().numpy(),
                       f"{prefix}condition_names": np.array(g.names),
                       **{f"{prefix}J_{m}": v.numpy() for m, v in sJ[k].items()},
                       **{f"{prefix}A_{m}": v.numpy() for m, v in sA[k].items()}})
        if has_values:
            arrays[f"{prefix}condition_values"] = values[k]
    arrays["alpha"] = np.array(groups["train"].alpha)
    np.savez(analysis_array_path(out_dir, "spectra"), **arrays)
    return numbers
