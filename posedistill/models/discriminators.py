"""Discriminators of the pose prior: latent-side (Makhzani AAE, paper) and pose-space (released code)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from posedistill.models.pose_prior import mlp
from posedistill.skeleton import Skeleton, unit_bones


class LatentDiscriminator(nn.Module):
    """(B, latent) codes → (B,) logits: prior sample (real) vs encoded pose (fake)."""

    def __init__(self, latent: int = 32, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp([latent, *hidden, 1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


class PoseDiscriminator(nn.Module):
    """(B, J, 3) poses → (B,) logits on unit bone directions: real pose vs decoded random code."""

    def __init__(self, skeleton: Skeleton, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.skeleton = skeleton
        self.net = mlp([3 * (skeleton.n_joints - 1), *hidden, 1])

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return self.net(unit_bones(pose, self.skeleton).flatten(-2)).squeeze(-1)
