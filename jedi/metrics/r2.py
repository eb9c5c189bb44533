"""Reconstruction R^2 as torchmetrics with sum-reducible states (exact under DDP); NaN masked.

Per output k over valid entries i (flattened trial x time):
    SSE_k = sum_i (y_ik - yhat_ik)^2,   SST_k = sum_i y_ik^2 - (sum_i y_ik)^2 / n_k.
``VarianceWeightedR2`` = 1 - sum_k SSE_k / sum_k SST_k (CtDB rate R^2, framework.md §10.10);
``MeanNeuronR2`` = mean_k (1 - SSE_k / SST_k) over outputs with SST_k > 0.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class _R2States(Metric):
    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, n_outputs: int, **kwargs):
        super().__init__(**kwargs)
        for name in ("sse", "sum_y", "sum_y2", "count"):
            self.add_state(name, default=torch.zeros(n_outputs, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred, target: (..., K); NaN entries of target are skipped."""
        if pred.shape != target.shape:
            raise ValueError(f"R2: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        K = target.shape[-1]
        y = target.detach().reshape(-1, K).double()  # (..., K) -> (M, K)
        yhat = pred.detach().reshape(-1, K).double()
        mask = ~torch.isnan(y)
        y0 = torch.where(mask, y, torch.zeros_like(y))
        err = torch.where(mask, yhat - y0, torch.zeros_like(y))
        self.sse += err.square().sum(0)
        self.sum_y += y0.sum(0)
        self.sum_y2 += y0.square().sum(0)
        self.count += mask.sum(0)

    def _sst(self) -> Tensor:
        return self.sum_y2 - self.sum_y.square() / self.count.clamp_min(1)


class VarianceWeightedR2(_R2States):
    """1 - sum_k SSE_k / sum_k SST_k over outputs k."""

    def compute(self) -> Tensor:
        return (1.0 - self.sse.sum() / self._sst().sum()).float()


class MeanNeuronR2(_R2States):
    """Plain mean over outputs of the per-output R^2 (outputs with zero variance are skipped)."""

    def compute(self) -> Tensor:
        sst = self._sst()
        valid = sst > 0
        return (1.0 - self.sse[valid] / sst[valid]).mean().float()
