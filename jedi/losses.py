"""Reconstruction losses for the student's predictions; NaN entries of the data are ignored."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _masked_mean(values: Tensor, mask: Tensor, per_trial: bool) -> Tensor:
    """Mean of ``values`` over observed entries: a scalar, or with ``per_trial`` one per trial (the
    leading dims of (..., T, K) values; ``mask`` broadcasts against them)."""
    values = torch.where(mask, values, torch.zeros_like(values))
    if not per_trial:
        return values.sum() / mask.sum().clamp_min(1)
    return values.sum((-2, -1)) / mask.sum((-2, -1)).clamp_min(1)


class MaskedMSE(nn.Module):
    """Mean squared error over observed (non-NaN) entries; predictions are rates. ``per_trial``:
    one mean per trial of (..., T, K) predictions instead of one over the batch."""

    link = "identity"

    def forward(self, pred: Tensor, target: Tensor, per_trial: bool = False) -> Tensor:
        mask = ~torch.isnan(target)
        return _masked_mean((pred - torch.nan_to_num(target)).square(), mask, per_trial)


class PoissonNLL(nn.Module):
    """Poisson NLL per observed bin with the prediction given as log-rate (expected counts per bin).

    Training drops the log-Gamma term; ``full=True`` keeps it (the NLL that is logged). ``per_trial``:
    one mean per trial of (..., T, K) predictions instead of one over the batch.
    """

    link = "exp"

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, log_rate: Tensor, counts: Tensor, per_trial: bool = False) -> Tensor:
        mask = ~torch.isnan(counts)
        y = torch.nan_to_num(counts)
        nll = torch.exp(log_rate) - y * log_rate
        if self.full:
            nll = nll + torch.lgamma(y + 1.0)
        return _masked_mean(nll, mask, per_trial)


def embedding_l2(c: Tensor) -> Tensor:
    """mean_n ||c_n||^2 of a batch of embeddings (B, d)."""
    return c.square().sum(-1).mean()

