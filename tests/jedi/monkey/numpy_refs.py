"""Independent numpy references of the NLB formulas, shared by the metric and analysis tests."""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def bits_per_spike_numpy(spikes, rates):
    """One-shot NLB formula with the log-Gamma terms kept: [NLL(null) - NLL(model)] / (ln 2 * sum y)."""
    y, lam = spikes.reshape(-1, spikes.shape[-1]), np.maximum(rates.reshape(-1, rates.shape[-1]), 1e-9)
    valid = ~np.isnan(y)
    null = np.array([np.nanmean(y[:, k]) for k in range(y.shape[1])])

    def nll(rate):
        terms = rate - y * np.log(rate) + gammaln(y + 1)
        return np.sum(terms[valid])
    return (nll(np.broadcast_to(null, y.shape)) - nll(lam)) / (np.log(2) * np.nansum(y))
