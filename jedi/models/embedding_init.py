"""Data-driven, label-free initialisation of a per-trial context table: each trial starts at its
coordinates in a principal-component space of phase-invariant trial features (lagged covariances
of the population's leading components), so trials with similar dynamics start close together.

Trials are read a block at a time (``block`` trials; a lazy HDF5 array is read from disk), so the
memory used does not grow with the number of trials beyond the table itself: the principal axes
come from accumulated covariances, not from an SVD of every frame or every trial's features.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

BLOCK = 1024  # trials read at once


def _blocks(data, block: int) -> Iterator[Tensor]:
    """Trials (b, T, K) of ``data`` (a tensor or a lazy trial array), float64, NaN as 0."""
    for lo in range(0, len(data), block):
        yield torch.nan_to_num(torch.as_tensor(data[lo:lo + block]).double())


def _leading_axes(second_moment: Tensor, total: Tensor, count: int, k: int) -> tuple[Tensor, Tensor]:
    """Mean (m,) and the k leading principal axes (k, m) of samples whose sum is ``total`` and
    sum of outer products ``second_moment`` (m, m)."""
    mean = total / max(count, 1)
    cov = second_moment / max(count, 1) - torch.outer(mean, mean)
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    return mean, eigvecs[:, eigvals.argsort(descending=True)[:k]].T


def frame_axes(data, n_components: int, block: int = BLOCK) -> tuple[Tensor, Tensor]:
    """Mean frame (K,) and the p leading principal axes (p, K) of all trials' pooled frames."""
    n, T, K = data.shape
    total, second = torch.zeros(K, dtype=torch.float64), torch.zeros(K, K, dtype=torch.float64)
    for x in _blocks(data, block):
        frames = x.reshape(-1, K)  # (b·T, K)
        total += frames.sum(0)
        second += frames.T @ frames
    return _leading_axes(second, total, n * T, min(n_components, K, n * T))


def _lag_covariances(x: Tensor, mean: Tensor, axes: Tensor, max_lag: int) -> Tensor:
    """Features (b, L·p·p) of trials x (b, T, K): covariances of their component time courses at
    lags 0..max_lag (L lags)."""
    T = x.shape[1]
    z = (x - mean) @ axes.T  # (b, T, p): component time courses
    z = z - z.mean(1, keepdim=True)
    lags = range(min(max_lag, T - 1) + 1)
    cov = [torch.einsum("ntp,ntq->npq", z[:, :T - lag], z[:, lag:]) / (T - lag) for lag in lags]
    return torch.stack(cov, 1).reshape(len(x), -1)  # (b, L, p, p) -> (b, L·p·p)


def lagged_covariance_features(data, n_components: int = 8, max_lag: int = 10, block: int = BLOCK) -> Tensor:
    """Per-trial features (n, p·p·(max_lag+1)) from trials (n, T, K), NaN treated as missing.

    The activity is projected on the p leading principal components of all trials' pooled,
    mean-centred frames, then every trial's covariance between its component time courses at
    lags 0..max_lag is flattened. A random phase or start time of the same dynamics leaves these
    features unchanged (up to finite-trial noise); the trial's own dynamics (a frequency, a decay)
    sets them.
    """
    mean, axes = frame_axes(data, n_components, block)
    return torch.cat([_lag_covariances(x, mean, axes, max_lag) for x in _blocks(data, block)])


def pca_embeddings(data, embedding_dim: int, std: float, n_components: int = 8, max_lag: int = 10,
                   block: int = BLOCK) -> Tensor:
    """Initial embeddings (n, d): the trials' first d principal components of their mean-centred
    lagged-covariance features, all scaled by one factor so the first has standard deviation ``std``
    (the others keep their smaller spread: whitening would give noise components the weight of the
    informative ones). Components beyond the features' rank are zero. Deterministic.

    Three passes over the trials: the frames' axes, the features' mean and covariance, the scores.
    """
    n = len(data)
    mean, axes = frame_axes(data, n_components, block)
    total = second = None
    for x in _blocks(data, block):
        f = _lag_covariances(x, mean, axes, max_lag)  # (b, F)
        total = f.sum(0) if total is None else total + f.sum(0)
        second = f.T @ f if second is None else second + f.T @ f
    k = min(embedding_dim, n, len(total))
    # not standardised: covariances share units, and noise features stay small
    f_mean, f_axes = _leading_axes(second, total, n, k)
    out = torch.zeros(n, embedding_dim, dtype=torch.float64)
    for lo, x in zip(range(0, n, block), _blocks(data, block)):
        out[lo:lo + len(x), :k] = (_lag_covariances(x, mean, axes, max_lag) - f_mean) @ f_axes.T
    out[:, :k] = out[:, :k] / out[:, 0].std().clamp_min(1e-12) * std
    # the sign of a principal axis is arbitrary: fix it so the largest-magnitude entry is positive
    sign = torch.sign(out[out.abs().argmax(0), torch.arange(embedding_dim)])  # (d,)
    return (out * torch.where(sign == 0, 1.0, sign)).float()
