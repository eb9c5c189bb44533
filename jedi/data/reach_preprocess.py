"""Shared preprocessing of binned reach recordings into the TrialSet form JEDI trains on.

Every reach source (MC_Maze NWB, TrialData .mat, the surrogate) ends in ``build_reach_trialset``:
held-in neurons first and held-out neurons last in ``data``; ``output="counts"`` keeps spike counts
(Poisson route, latent mode), ``output="rates"`` Gaussian-smooths them and divides each neuron by its
maximum so the data lie in [0, 1] (MSE route, unit mode); the per-neuron scale is stored.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from jedi_rnn.data.trials import TrialSet

OUTPUTS = ("counts", "rates")


def gaussian_smooth(x: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian smoothing along axis 1 of (n, T, K), NaN-aware (normalised convolution)."""
    if sigma_bins <= 0:
        return x.astype(np.float64)
    mask = ~np.isnan(x)
    num = gaussian_filter1d(np.where(mask, x, 0.0).astype(np.float64), sigma_bins, axis=1, mode="constant")
    den = gaussian_filter1d(mask.astype(np.float64), sigma_bins, axis=1, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~mask] = np.nan
    return out


def heldout_order(n_neurons: int, heldout: Optional[np.ndarray], n_heldout: int, seed: int) -> tuple[np.ndarray, int]:
    """Column order putting held-out neurons last, and their count.

    ``heldout`` (bool per neuron, e.g. the NWB units' ``heldout`` column) wins when given;
    otherwise ``n_heldout`` neurons are drawn with a seeded generator (0: no held-out neurons).
    """
    if heldout is None:
        if not 0 <= n_heldout < n_neurons:
            raise ValueError(f"data.source.n_heldout must be in [0, {n_neurons - 1}], got {n_heldout}")
        heldout = np.zeros(n_neurons, dtype=bool)
        if n_heldout:
            heldout[np.random.default_rng(seed).choice(n_neurons, n_heldout, replace=False)] = True
    heldout = np.asarray(heldout, dtype=bool)
    order = np.concatenate([np.flatnonzero(~heldout), np.flatnonzero(heldout)])
    return order, int(heldout.sum())


def build_reach_trialset(counts: np.ndarray, conditions: np.ndarray, condition_names: list[str], dt: float,
                         order: np.ndarray, n_heldout: int, output: str, smooth_sigma_s: float,
                         condition_values: Optional[np.ndarray] = None, time_extras: Optional[dict] = None,
                         trial_extras: Optional[dict] = None, meta: Optional[dict] = None,
                         psth: Optional[np.ndarray] = None, origin: str = "reach data") -> TrialSet:
    """Assemble a TrialSet from binned counts (n, T, K) in file order.

    ``time_extras`` are (n, T, ...) arrays aligned with the data bins (cut by the phase transform);
    ``trial_extras`` are per-trial arrays; ``psth`` (C, T, K) is reordered like the neurons.
    ``extras["heldout_spikes"]`` always holds the held-out neurons' raw counts.
    """
    if output not in OUTPUTS:
        raise ValueError(f"data.source.output must be one of {list(OUTPUTS)}, got {output!r}")
    counts = counts[:, :, order].astype(np.float64)
    n_neurons = counts.shape[2]
    meta = dict(meta or {})
    time_extras = dict(time_extras or {})
    if n_heldout:
        time_extras["heldout_spikes"] = counts[:, :, n_neurons - n_heldout:]
    if output == "counts":
        data = counts
        if smooth_sigma_s > 0:
            raise ValueError("data.source.smooth_sigma applies to output=rates; spike counts stay unsmoothed")
    else:
        data = gaussian_smooth(counts, smooth_sigma_s / dt)
        scale = np.nanmax(data, axis=(0, 1))
        scale[~(scale > 0)] = 1.0
        data = data / scale
        meta["rate_scale"] = scale  # data * rate_scale = smoothed expected counts per bin
    if psth is not None:
        meta["psth"] = psth[:, :, order]
    meta.update({"n_heldout": n_heldout, "output": output, "time_extras": sorted(time_extras),
                 "neuron_order": order})
    extras = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in time_extras.items()}
    for k, v in (trial_extras or {}).items():
        v = np.asarray(v)
        extras[k] = torch.as_tensor(v, dtype=torch.long if np.issubdtype(v.dtype, np.integer) else torch.float32)
    return TrialSet(
        data=torch.as_tensor(data, dtype=torch.float32), conditions=torch.as_tensor(conditions, dtype=torch.long),
        condition_names=list(condition_names), dt=float(dt),
        condition_values=None if condition_values is None else torch.as_tensor(condition_values, dtype=torch.float32),
        extras=extras, meta=meta).validate(origin)
