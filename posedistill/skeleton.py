"""Skeletons (paper17, h36m17), bone lists, left/right flip, joint maps and bone utilities.

Poses are (..., J, 3) arrays or tensors in mm, camera coordinates with x along the image
horizontal, root-relative (joint 0). All functions accept numpy arrays and torch tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree: joint names, parents (root parent -1), left/right joint pairs and
    canonical bone lengths in mm (``bone_lengths[j]`` is the length of bone parent(j) → j)."""

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    bone_lengths: tuple[float, ...]
    root: int = 0

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if len(self.parents) != n or len(self.bone_lengths) != n:
            raise ValueError(f"skeleton {self.name}: parents/bone_lengths must have {n} entries")
        if self.parents[self.root] != -1:
            raise ValueError(f"skeleton {self.name}: the root's parent must be -1")
        for j, p in enumerate(self.parents):
            if j != self.root and not 0 <= p < j:
                raise ValueError(f"skeleton {self.name}: joint {j} must come after its parent {p}")
        if len(self.left) != len(self.right):
            raise ValueError(f"skeleton {self.name}: left and right lists differ in length")

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) pairs in topological order."""
        return [(p, j) for j, p in enumerate(self.parents) if p >= 0]

    @property
    def children(self) -> list[int]:
        """Child joint of every bone, in the order of :attr:`bones`."""
        return [j for _, j in self.bones]

    @property
    def flip_perm(self) -> np.ndarray:
        """Joint permutation swapping left and right joints (an involution)."""
        perm = np.arange(self.n_joints)
        perm[list(self.left)] = self.right
        perm[list(self.right)] = self.left
        return perm

    @property
    def canonical_bones(self) -> np.ndarray:
        """Canonical lengths (mm) of the bones, in the order of :attr:`bones`."""
        return np.asarray([self.bone_lengths[j] for j in self.children], dtype=np.float32)

    def index(self, name: str) -> int:
        return self.joint_names.index(name)


# Code ratios (neck→head_top = 2.0) × 107 mm.
_UNIT = 107.0
PAPER17 = Skeleton(
    name="paper17",
    joint_names=("pelvis", "neck", "r_shldr", "r_elbow", "r_wrist", "l_shldr", "l_elbow",
                 "l_wrist", "head_top", "r_hip", "r_knee", "r_ankle", "r_foot", "l_hip",
                 "l_knee", "l_ankle", "l_foot"),
    parents=(-1, 0, 1, 2, 3, 1, 5, 6, 1, 0, 9, 10, 11, 0, 13, 14, 15),
    left=(5, 6, 7, 13, 14, 15, 16),
    right=(2, 3, 4, 9, 10, 11, 12),
    bone_lengths=tuple(_UNIT * r for r in (0.0, 4.75, 1.37, 2.8, 2.4, 1.37, 2.8, 2.4, 2.0,
                                          1.05, 4.2, 3.6, 2.0, 1.05, 4.2, 3.6, 2.0)),
)

# VideoPose3D's Human3.6M 17-joint skeleton (shoulders rewired to the thorax). Canonical bone
# lengths are rounded Human3.6M averages [inferred], used only when a prior is trained on h36m17.
H36M17 = Skeleton(
    name="h36m17",
    joint_names=("hip", "r_hip", "r_knee", "r_foot", "l_hip", "l_knee", "l_foot", "spine",
                 "thorax", "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist",
                 "r_shoulder", "r_elbow", "r_wrist"),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
    bone_lengths=(0.0, 133.0, 443.0, 454.0, 133.0, 443.0, 454.0, 234.0, 252.0, 116.0, 115.0,
                  151.0, 279.0, 250.0, 151.0, 279.0, 250.0),
)

SKELETONS = {"paper17": PAPER17, "h36m17": H36M17}

# 32-joint Human3.6M mocap → skeleton joints.
H36M32_TO_H36M17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# The released code's map uses 4 (RToeBase) for r_foot but 10 for l_foot; we use the mirror
# of 4, which is 9 (LToeBase). The code's map is kept for comparison.
H36M32_TO_PAPER17 = (0, 16, 25, 26, 27, 17, 18, 19, 15, 1, 2, 3, 4, 6, 7, 8, 9)
H36M32_TO_PAPER17_CODE = (0, 16, 25, 26, 27, 17, 18, 19, 15, 1, 2, 3, 4, 6, 7, 8, 10)
# The 15 joints the two skeletons share: (paper17 index, h36m17 index).
COMMON15 = ((0, 0), (1, 8), (2, 14), (3, 15), (4, 16), (5, 11), (6, 12), (7, 13), (8, 10),
            (9, 1), (10, 2), (11, 3), (13, 4), (14, 5), (15, 6))


def get_skeleton(name: str) -> Skeleton:
    if name not in SKELETONS:
        raise ValueError(f"unknown skeleton {name!r}; choose from {sorted(SKELETONS)}")
    return SKELETONS[name]


def flip_pose(pose, skeleton: Skeleton = PAPER17):
    """Mirror a pose (..., J, 3): negate x and swap left/right joints (image flip ≡ pose flip)."""
    perm = skeleton.flip_perm
    if isinstance(pose, torch.Tensor):
        out = pose[..., torch.as_tensor(perm, device=pose.device), :].clone()
    else:
        out = np.array(pose[..., perm, :], copy=True)
    out[..., 0] = -out[..., 0]
    return out


def h36m32_to_paper17(pose32: np.ndarray, joint_map=H36M32_TO_PAPER17) -> np.ndarray:
    """(..., 32, 3) mocap → (..., 17, 3) paper17; the pelvis becomes the hip midpoint."""
    out = np.array(pose32[..., list(joint_map), :], copy=True)
    out[..., 0, :] = 0.5 * (pose32[..., 1, :] + pose32[..., 6, :])
    return out


def h36m32_to_h36m17(pose32: np.ndarray) -> np.ndarray:
    """(..., 32, 3) mocap → (..., 17, 3) VideoPose3D order."""
    return np.array(pose32[..., list(H36M32_TO_H36M17), :], copy=True)


def bone_vectors(pose: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """(..., J, 3) joints → (..., J-1, 3) child − parent vectors in :attr:`Skeleton.bones` order."""
    parents = [p for p, _ in skeleton.bones]
    return pose[..., skeleton.children, :] - pose[..., parents, :]


def bone_lengths(pose: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """(..., J, 3) → (..., J-1) bone lengths."""
    return bone_vectors(pose, skeleton).norm(dim=-1)


def chain_bones(bones: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """Forward kinematics: (..., J-1, 3) bone vectors → (..., J, 3) joints with the root at 0."""
    joints = [None] * skeleton.n_joints
    joints[skeleton.root] = torch.zeros_like(bones[..., 0, :])
    for b, (p, j) in enumerate(skeleton.bones):
        joints[j] = joints[p] + bones[..., b, :]
    return torch.stack(joints, dim=-2)


def unit_bones(pose: torch.Tensor, skeleton: Skeleton = PAPER17, eps: float = 1e-8) -> torch.Tensor:
    """(..., J, 3) → (..., J-1, 3) unit bone directions."""
    v = bone_vectors(pose, skeleton)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def retarget(pose: torch.Tensor, lengths: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """Keep the bone directions of ``pose`` (..., J, 3) and give it the bone ``lengths``
    ((J-1,) or broadcastable (..., J-1)); returns root-relative joints."""
    return chain_bones(unit_bones(pose, skeleton) * lengths[..., None], skeleton)


def canonicalize(pose: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """Retarget a pose onto the skeleton's canonical bone lengths."""
    lengths = torch.as_tensor(skeleton.canonical_bones, dtype=pose.dtype, device=pose.device)
    return retarget(pose, lengths, skeleton)
