"""Reconstruction losses for the student's predictions; NaN entries of the data are ignored."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MaskedMSE(nn.Module):
    """Mean squared error over observed (non-NaN) entries; predictions are rates."""

    link = "identity"

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        mask = ~torch.isnan(target)
        diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
        return diff.square().sum() / mask.sum().clamp_min(1)


class PoissonNLL(nn.Module):
    """Poisson NLL per observed bin with the prediction given as log-rate (expected counts per bin).

    Training drops the log-Gamma term; ``full=True`` keeps it (the NLL that is logged).
    """

    link = "exp"

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, log_rate: Tensor, counts: Tensor) -> Tensor:
        mask = ~torch.isnan(counts)
        y = torch.nan_to_num(counts)
        nll = torch.exp(log_rate) - y * log_rate
        if self.full:
            nll = nll + torch.lgamma(y + 1.0)
        return torch.where(mask, nll, torch.zeros_like(nll)).sum() / mask.sum().clamp_min(1)


def embedding_l2(c: Tensor) -> Tensor:
    """mean_n ||c_n||^2 of a batch of embeddings (B, d)."""
    return c.square().sum(-1).mean()

