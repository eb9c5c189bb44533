"""Pose-prior auto-encoder networks: E_p (pose → box-bounded latent z) and D_p (z → pose).

The encoder reads unit bone directions (so it ignores subject bone lengths); its output is
``box·tanh(h/box)``. The decoder outputs either unit bone directions × the skeleton's canonical
bone lengths chained from the root (``output='bones'``: bone ratios exact by construction) or
root-relative joints (``output='joints'``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from posedistill.skeleton import Skeleton, chain_bones, unit_bones


def mlp(sizes: Sequence[int], slope: float = 0.2) -> nn.Sequential:
    """Linear layers with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


def box_tanh(h: torch.Tensor, box: float) -> torch.Tensor:
    """Bound to (-box, box): box·tanh(h/box)."""
    return box * torch.tanh(h / box)


class PoseEncoder(nn.Module):
    """(B, J, 3) poses → (B, latent) codes in the box."""

    def __init__(self, skeleton: Skeleton, latent: int = 32, hidden: Sequence[int] = (256, 256), box: float = 1.0):
        super().__init__()
        self.skeleton, self.box = skeleton, box
        self.net = mlp([3 * (skeleton.n_joints - 1), *hidden, latent])

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        dirs = unit_bones(pose, self.skeleton)  # (B, J-1, 3)
        return box_tanh(self.net(dirs.flatten(-2)), self.box)


class PoseDecoder(nn.Module):
    """(B, latent) codes → (B, J, 3) root-relative poses in mm."""

    def __init__(self, skeleton: Skeleton, latent: int = 32, hidden: Sequence[int] = (256, 256), output: str = "bones"):
        super().__init__()
        if output not in ("bones", "joints"):
            raise ValueError(f"PoseDecoder: output must be 'bones' or 'joints', got {output!r}")
        self.skeleton, self.output = skeleton, output
        n_out = 3 * (skeleton.n_joints - 1) if output == "bones" else 3 * skeleton.n_joints
        self.net = mlp([latent, *hidden, n_out])
        self.register_buffer("lengths", torch.as_tensor(skeleton.canonical_bones), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.net(z)
        if self.output == "bones":
            d = h.unflatten(-1, (-1, 3))  # (B, J-1, 3)
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            return chain_bones(d * self.lengths[:, None], self.skeleton)
        pose = h.unflatten(-1, (-1, 3)) * 1000.0  # metres-scale output → mm
        return pose - pose[..., self.skeleton.root : self.skeleton.root + 1, :]
