"""Non-local relation energies (spec §5.3, eqs. (2)–(3)) and the image-sequence transforms T^X.

Distances are mean absolute errors (the code's ‖·‖). The pose-flip energy keeps gradients through
both branches; the motion energies stop the gradient on the positive branch (§5.3 [code]).
Clips are (B, T, C, H, W); the image width is the last axis, so a horizontal flip is
``flip(-1)`` and, given the renderer's guarantee, equals the pose flip.
"""
from __future__ import annotations

import torch


def relation_energy(transformed_anchor: torch.Tensor, positive: torch.Tensor, stop_grad_positive: bool) -> torch.Tensor:
    """mean |T(code(anchor)) − code(positive)|, optionally with the positive branch detached."""
    if transformed_anchor.shape != positive.shape:
        raise ValueError(f"relation_energy: shapes differ, {tuple(transformed_anchor.shape)} vs {tuple(positive.shape)}")
    target = positive.detach() if stop_grad_positive else positive
    return (transformed_anchor - target).abs().mean()


def flip_backward_clip(clips: torch.Tensor) -> torch.Tensor:
    """T^X for flip-backward: every frame flipped, then the frame order reversed; (B, T, C, H, W)."""
    return clips.flip(-1).flip(1)


def slow_backward_pair(raw: torch.Tensor, clip_len: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow-backward (spec §14.8) from raw clips (B, 2·clip_len, C, H, W) at 30 FPS:
    anchor ``raw[:, ::2]`` (2 s at double speed), positive ``reverse(raw[:, L/2 : 3L/2])``
    (the middle second, half the anchor's speed, reversed); both (B, clip_len, C, H, W)."""
    if raw.shape[1] < 2 * clip_len:
        raise ValueError(f"slow-backward needs clips of {2 * clip_len} frames, got {raw.shape[1]} (set the target clip length to {2 * clip_len})")
    raw = raw[:, : 2 * clip_len]
    half = clip_len // 2
    return raw[:, ::2], raw[:, half : half + clip_len].flip(1)
