"""Relation transformers T_r: MLPs mapping a latent code to the code of its transformed entity."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from posedistill.models.pose_prior import box_tanh


class RelationTransformer(nn.Module):
    """(B, dim) → (B, dim): ReLU MLP with a residual connection, bounded to the latent box."""

    def __init__(self, dim: int, hidden: Sequence[int] = (256, 256), box: float = 1.0):
        super().__init__()
        sizes = [dim, *hidden, dim]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.box = box

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return box_tanh(z + self.net(z), self.box)
