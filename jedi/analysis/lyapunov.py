"""Lyapunov spectrum of a trained JEDI student at every training condition
(``jedi_rnn.dynamics.lyapunov``), with its plot and arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jedi_rnn.analysis.plotting import analysis_array_path, condition_colors, legend_outside, plt, safe_key, save_figure
from jedi_rnn.analysis.student import student_contexts, student_initial_states
from jedi_rnn.dynamics.lyapunov import lyapunov_spectrum


def analyze_lyapunov(module, datamodule, out_dir: Path, n_exponents: int = 10, burn_in: int = 500,
                     n_steps: int = 2000, seed: int = 0) -> dict:
    """Lyapunov spectrum of the student at every training condition, from the module's initial state
    of one training trial of that condition.

    Returns ``lyapunov/...`` numbers (lambda_max: largest exponent over conditions; lambda_max_mean;
    n_positive_mean; lambda_max/<condition> per condition), saves ``lyapunov.png`` and
    ``<run>/analysis/lyapunov.npz``.
    """
    gen = torch.Generator().manual_seed(seed)
    ctx = student_contexts(module, datamodule)
    x0 = student_initial_states(module, datamodule, ctx, 1, gen)[:, 0]  # (C, N)
    res = lyapunov_spectrum(ctx.map, x0, ctx.dt, n_exponents, burn_in, n_steps, generator=gen)
    lam = res.exponents.cpu()
    numbers = {
        "lyapunov/lambda_max": float(lam[:, 0].max()),
        "lyapunov/lambda_max_mean": float(lam[:, 0].mean()),
        "lyapunov/n_positive_mean": float((lam > 0).double().sum(1).mean()),
        **{f"lyapunov/lambda_max/{safe_key(n)}": float(lam[i, 0]) for i, n in enumerate(ctx.names)},
    }
    values = ctx.values.double().numpy() if ctx.values is not None else None
    colors = condition_colors(len(ctx.names), values)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    running = res.running()
    t = np.arange(1, running.shape[1] + 1) * ctx.dt
    for i, (name, color) in enumerate(zip(ctx.names, colors)):
        axes[0].plot(np.arange(1, lam.shape[1] + 1), lam[i].numpy(), "o-", ms=3, color=color, label=name)
        axes[1].plot(t, running[i, :, 0].numpy(), color=color, lw=0.8)
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set(xlabel="index i", ylabel="λ_i (1/s)", title="Lyapunov spectrum")
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set(xlabel="time counted (s)", ylabel="running λ_1 (1/s)", title="convergence")
    legend_outside(fig, axes[0])
    save_figure(fig, Path(out_dir) / "lyapunov.png")
    arrays = {"exponents": lam.numpy(), "per_step": res.per_step.cpu().numpy(), "x0": x0.cpu().numpy(),
              "condition_ids": ctx.condition_ids.numpy(), "condition_names": np.array(ctx.names),
              "dt": np.array(ctx.dt)}
    if values is not None:
        arrays["condition_values"] = values
    np.savez(analysis_array_path(out_dir, "lyapunov"), **arrays)
    return numbers
