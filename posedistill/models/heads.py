"""Small MLP heads: contrastive projection heads (spec §5.2) and the DANN domain classifier."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ProjectionHead(nn.Module):
    """Contrastive projection head (the code's MLP 512 → 256 → 128, ReLU): (B, in_dim) → (B, out_dim).

    The output is not normalised; :func:`posedistill.losses.contrastive.info_nce` L2-normalises.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (512, 256), out_dim: int = 128):
        super().__init__()
        self.net = _mlp([in_dim, *hidden, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DomainClassifier(nn.Module):
    """DANN domain classifier on encoder features: (B, in_dim) → source-vs-target logit (B,)."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = _mlp([in_dim, *hidden, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
