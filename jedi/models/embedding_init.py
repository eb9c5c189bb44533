"""Data-driven, label-free initialisation of a per-trial context table: each trial starts at its
coordinates in a principal-component space of phase-invariant trial features (lagged covariances
of the population's leading components), so trials with similar dynamics start close together."""
from __future__ import annotations

import torch
from torch import Tensor


def lagged_covariance_features(data: Tensor, n_components: int = 8, max_lag: int = 10) -> Tensor:
    """Per-trial features (n, p·p·(max_lag+1)) from trials (n, T, K), NaN treated as missing.

    The activity is projected on the p leading principal components of all trials' pooled,
    mean-centred frames, then every trial's covariance between its component time courses at
    lags 0..max_lag is flattened. A random phase or start time of the same dynamics leaves these
    features unchanged (up to finite-trial noise); the trial's own dynamics (a frequency, a decay)
    sets them.
    """
    n, T, K = data.shape
    x = torch.nan_to_num(data.double())
    frames = x.reshape(n * T, K)  # (n·T, K)
    frames = frames - frames.mean(0)
    p = min(n_components, K, n * T)
    _, _, V = torch.linalg.svd(frames, full_matrices=False)
    z = (frames @ V[:p].T).reshape(n, T, p)  # (n, T, p): component time courses
    z = z - z.mean(1, keepdim=True)
    lags = range(min(max_lag, T - 1) + 1)
    cov = [torch.einsum("ntp,ntq->npq", z[:, :T - lag], z[:, lag:]) / (T - lag) for lag in lags]
    return torch.stack(cov, 1).reshape(n, -1)  # (n, L, p, p) -> (n, L·p·p)


def pca_embeddings(data: Tensor, embedding_dim: int, std: float, n_components: int = 8,
                   max_lag: int = 10) -> Tensor:
    """Initial embeddings (n, d): the trials' first d principal components of their mean-centred
    lagged-covariance features, all scaled by one factor so the first has standard deviation ``std``
    (the others keep their smaller spread: whitening would give noise components the weight of the
    informative ones). Components beyond the features' rank are zero. Deterministic (an SVD)."""
    f = lagged_covariance_features(data, n_components, max_lag)
    f = f - f.mean(0)  # not standardised: covariances share units, and noise features stay small
    U, S, _ = torch.linalg.svd(f, full_matrices=False)
    k = min(embedding_dim, U.shape[1])
    scores = U[:, :k] * S[:k]  # (n, k)
    out = torch.zeros(len(data), embedding_dim, dtype=torch.float64)
    out[:, :k] = scores / scores[:, 0].std().clamp_min(1e-12) * std
    # the sign of a singular vector is arbitrary: fix it so the largest-magnitude entry is positive
    sign = torch.sign(out[out.abs().argmax(0), torch.arange(embedding_dim)])  # (d,)
    return (out * torch.where(sign == 0, 1.0, sign)).float()
