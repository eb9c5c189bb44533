"""Local contrastive relations (spec §5.2, eq. (1) with its −log, τ = 0.07).

``info_nce``: for anchors a_i with positives p_i (all L2-normalised) and the other anchors as
negatives (the code's scheme; §13(d) uses every in-batch anchor),

    L_i = −log( e^{a_i·p_i/τ} / (e^{a_i·p_i/τ} + Σ_{j≠i} e^{a_i·a_j/τ}) ).

``pose_invariant_augment`` draws the positive view A(x): by default colour changes only (brightness
factor, per-channel gain, additive noise), no geometric change, so the pose is unchanged. Optional,
off by default (each draws random numbers only when on, so the default view is unchanged):
``grayscale_p`` / ``channel_shuffle_p`` (colour → grey, a random channel permutation), ``blur``
(Gaussian σ range in pixels) and the crop jitter ``translate`` (shift, fraction of the image) /
``scale`` (zoom ±fraction): a detector crop's shift and size do not change the root-relative 3D pose,
so these stay pose-invariant (no flip, no rotation).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def info_nce(
    anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.07, anchor: str = "all"
) -> torch.Tensor:
    """anchors, positives (N, D) → scalar loss; ``anchor='all'`` averages over every anchor,
    ``'single'`` uses anchor 0 only (the released code)."""
    if anchors.shape != positives.shape or anchors.ndim != 2:
        raise ValueError(f"info_nce: anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)} must be equal (N, D)")
    if anchors.shape[0] < 2:
        raise ValueError("info_nce needs at least 2 anchors (the other anchors are the negatives)")
    a = F.normalize(anchors, dim=-1)
    p = F.normalize(positives, dim=-1)
    s_pos = (a * p).sum(-1, keepdim=True) / temperature  # (N, 1)
    s_neg = a @ a.T / temperature  # (N, N); the diagonal is the anchor itself, not a negative
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    logits = torch.cat([s_pos, s_neg.masked_fill(eye, float("-inf"))], dim=1)  # (N, 1 + N)
    losses = torch.logsumexp(logits, dim=1) - s_pos.squeeze(1)
    if anchor == "all":
        return losses.mean()
    if anchor == "single":
        return losses[0]
    raise ValueError(f"contrastive anchor must be 'all' or 'single', got {anchor!r}")


def pose_invariant_augment(
    images: torch.Tensor,
    generator: torch.Generator,
    brightness: tuple[float, float] = (0.5, 1.5),
    channel_gain: float = 0.2,
    noise_std: float = 0.03,
    grayscale_p: float = 0.0,
    channel_shuffle_p: float = 0.0,
    blur: tuple[float, float] = (0.0, 0.0),
    translate: float = 0.0,
    scale: float = 0.0,
) -> torch.Tensor:
    """images (..., C, H, W) in [0, 1] → a jittered copy, one draw per image (see the module doc)."""
    lead = images.shape[:-3]
    c = images.shape[-3]
    shape = (*lead, 1, 1, 1)
    dev, dt = images.device, images.dtype
    rand = lambda *s: torch.rand(s, generator=generator).to(dev, dt)  # noqa: E731
    lo, hi = brightness
    factor = lo + (hi - lo) * rand(*shape)
    gain = 1 + channel_gain * (2 * torch.rand((*lead, c, 1, 1), generator=generator) - 1).to(dev, dt)
    noise = noise_std * torch.randn(images.shape, generator=generator).to(dev, dt)
    out = images
    if translate > 0 or scale > 0:
        out = _crop_jitter(out, rand, translate, scale)
    if channel_shuffle_p > 0 and c > 1:
        perm = torch.stack([torch.randperm(c, generator=generator) for _ in range(math.prod(lead))])
        shuffled = torch.gather(out.reshape(-1, c, *out.shape[-2:]), 1,
                                perm.to(dev)[:, :, None, None].expand(-1, c, *out.shape[-2:])).reshape(out.shape)
        out = torch.where(rand(*shape) < channel_shuffle_p, shuffled, out)
    if grayscale_p > 0 and c > 1:
        grey = out.mean(-3, keepdim=True).expand_as(out)
        out = torch.where(rand(*shape) < grayscale_p, grey, out)
    if blur[1] > 0:
        out = _gaussian_blur(out, blur[0] + (blur[1] - blur[0]) * rand(*lead))
    return (out * factor * gain + noise).clamp(0.0, 1.0)


def _crop_jitter(images: torch.Tensor, rand, translate: float, scale: float) -> torch.Tensor:
    """Shift each image by U(±translate)·size and zoom it by 1 + U(±scale) (bilinear, black border)."""
    lead, (c, h, w) = images.shape[:-3], images.shape[-3:]
    flat = images.reshape(-1, c, h, w)
    n = flat.shape[0]
    zoom = 1 + scale * (2 * rand(n) - 1)
    shift = translate * (2 * rand(n, 2) - 1) * 2  # affine_grid coordinates span 2 per image size
    theta = torch.zeros(n, 2, 3, dtype=flat.dtype, device=flat.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = shift
    grid = torch.nn.functional.affine_grid(theta, list(flat.shape), align_corners=False)
    return torch.nn.functional.grid_sample(flat, grid, align_corners=False).reshape(*lead, c, h, w)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur with a per-image σ (lead-shaped tensor, px; σ ≤ 0.05 leaves the image)."""
    lead, (c, h, w) = images.shape[:-3], images.shape[-3:]
    flat = images.reshape(-1, c, h, w)
    s = sigma.reshape(-1, 1).clamp_min(0.05)
    x = torch.arange(-radius, radius + 1, dtype=flat.dtype, device=flat.device)
    k = torch.exp(-0.5 * (x / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (N, 2r+1)
    n = flat.shape[0]
    kc = k.repeat_interleave(c, 0)  # (N·C, 2r+1): one kernel per channel of each image
    g = flat.reshape(1, n * c, h, w)
    g = torch.nn.functional.conv2d(torch.nn.functional.pad(g, (radius, radius, 0, 0), mode="replicate"),
                                   kc[:, None, None, :], groups=n * c)
    g = torch.nn.functional.conv2d(torch.nn.functional.pad(g, (0, 0, radius, radius), mode="replicate"),
                                   kc[:, None, :, None], groups=n * c)
    return g.reshape(*lead, c, h, w)


def random_appearance(images: torch.Tensor, generator: torch.Generator, scales: tuple[int, ...] = (2, 4, 8, 16),
                      threshold: float = 1.0 / 255) -> torch.Tensor:
    """Person-on-black images (B, C, H, W) in [0, 1] → RGB (B, 3, H, W): the person (pixels above
    ``threshold``) tinted by a random per-image colour gain, the black background replaced by a
    random smooth colour texture (uniform noise on a random ``scales`` grid, bilinearly upsampled).
    Pose-invariant: no pixel of the person moves."""
    b, _, h, w = images.shape
    dev, dt = images.device, images.dtype
    rand = lambda *shape: torch.rand(shape, generator=generator).to(dev, dt)  # noqa: E731
    person = images.expand(b, 3, h, w) if images.shape[1] == 1 else images
    mask = (images.amax(1, keepdim=True) > threshold).to(dt)  # (B, 1, H, W)
    person = person * (0.3 + 0.7 * rand(b, 3, 1, 1))
    k = scales[int(torch.randint(len(scales), (1,), generator=generator))]
    texture = torch.nn.functional.interpolate(rand(b, 3, k, k), size=(h, w), mode="bilinear", align_corners=False)
    background = (rand(b, 3, 1, 1) + rand(b, 1, 1, 1) * (texture - 0.5)).clamp(0.0, 1.0)
    return mask * person + (1 - mask) * background
