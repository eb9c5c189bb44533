"""Distribution match between G's poses on target frames and unpaired 3D poses (not one of the paper's
energies; stage E's anchor against collapse, issue 24).

The sliced Wasserstein distance (POT, ``ot.sliced_wasserstein_distance``) between two sets of
root-relative poses, each flattened to a vector of J·3 coordinates (mm): the mean over random unit
directions of the 1-D Wasserstein-2 distance between the two sets' projections. It is zero only when
the two sets project alike on every direction, so one static pose for every frame (the relation
energies' fixed point) is far from a varied reference set.
"""
from __future__ import annotations

import ot
import torch


def random_directions(dim: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere of R^dim, as the columns of a (dim, n) matrix."""
    d = torch.randn(dim, n, generator=generator)
    return d / d.norm(dim=0, keepdim=True)


def sliced_wasserstein(poses: torch.Tensor, reference: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-2 distance (mm) between poses (N, J, 3) and reference poses (M, J, 3) along
    ``directions`` (J·3, K); differentiable in ``poses``."""
    if poses.shape[1:] != reference.shape[1:]:
        raise ValueError(f"sliced_wasserstein: pose shapes differ, {tuple(poses.shape[1:])} vs {tuple(reference.shape[1:])}")
    x = poses.flatten(1)  # (N, J·3)
    y = reference.flatten(1).to(x)  # (M, J·3)
    return ot.sliced_wasserstein_distance(x, y, projections=directions.to(x), p=2)
