"""Known transforms T^y (pose) and T^Y (pose sequence) of the candidate relations, and the
matching image transforms. Torch tensors; time is dim 1 for sequences (B, T, ...).

Pose relations: ``flip`` (mirror: negate x, swap sides), ``rot5``/``rot15``/``rot30`` (in-plane
rotation about the camera axis), ``flip_rot50`` (the released code's rule: 50° in-plane then flip).
Motion relations on a raw clip of 2L frames (L = 30). The speed-preserving ones (``backward``,
``flip``, ``flip_backward``) take the native-speed first L frames ``raw[:L]`` as anchor, the frames
stage E applies them to (``AdaptStage``: ``raw[:, :seq_len]``; the released code trains flip-backward
on native-speed 30-frame clips). ``slow`` / ``slow_backward`` take ``raw[::2]`` (2 s at double speed)
against the middle ``raw[L/2 : 3L/2]``; ``fast`` is the inverse of ``slow``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from posedistill.skeleton import PAPER17, Skeleton, flip_pose

POSE_RELATIONS = ("flip", "rot5", "rot15", "rot30")
MOTION_RELATIONS = ("backward", "flip", "flip_backward", "slow", "slow_backward", "fast")


def rotate_inplane(pose: torch.Tensor, deg: float) -> torch.Tensor:
    """Rotate (..., J, 3) poses by ``deg`` about the camera's optical (z) axis."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    x, y = pose[..., 0], pose[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y, pose[..., 2]], -1)


def pose_transform(name: str, pose: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """Apply the pose relation ``name`` to poses (..., J, 3)."""
    if name == "flip":
        return flip_pose(pose, skeleton)
    if name.startswith("rot") and name[3:].isdigit():
        return rotate_inplane(pose, float(name[3:]))
    if name == "flip_rot50":
        return flip_pose(rotate_inplane(pose, 50.0), skeleton)
    raise ValueError(f"unknown pose relation {name!r}; known: {POSE_RELATIONS + ('flip_rot50',)}")


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of (..., C, H, W) images (equals the pose flip of the rendered person)."""
    return images.flip(-1)


def motion_pair(name: str, raw: torch.Tensor, flip_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """(anchor, positive), each (B, L, ...), of motion relation ``name`` from raw clips (B, 2L, ...).

    ``flip_fn`` mirrors a sequence (default: pose flip; pass :func:`flip_images` for images).
    """
    flip = flip_fn or flip_pose
    t2 = raw.shape[1]
    if t2 % 2:
        raise ValueError(f"motion_pair: raw clips need an even number of frames, got {t2}")
    length = t2 // 2
    native = raw[:, :length]
    fast_view = raw[:, ::2]
    middle = raw[:, length // 2 : length // 2 + length]
    rev = lambda x: x.flip(1)  # noqa: E731
    if name == "backward":
        return native, rev(native)
    if name == "flip":
        return native, flip(native)
    if name == "flip_backward":
        return native, rev(flip(native))
    if name == "slow":
        return fast_view, middle
    if name == "slow_backward":
        return fast_view, rev(middle)
    if name == "fast":
        return middle, fast_view
    raise ValueError(f"unknown motion relation {name!r}; known: {MOTION_RELATIONS}")
