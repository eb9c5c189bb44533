"""Image → latent pose code network G (spec §1.2, §7, §13(d)).

A trunk of named blocks (``block1`` … ``blockN``) followed by an embedding head
(flatten → FC ``feat_dim`` → FC ``latent_dim`` → ``box·tanh(h/box)``). Two trunks:

- ``small``: a 5-block ResNet-style CNN for 64×64 inputs (channels 32-32-64-128-128, every
  block stride 2, GroupNorm, BatchNorm or no norm), about 14 M multiply-adds per image. ``block3`` is the
  "res3" analogue that adaptation trains.
- ``resnet50``: torchvision's ResNet-50 up to res4f (``layer3``), for real 224×224 crops, with
  the code's extra stride-2 conv before the FC head. Needs torchvision.

Which blocks are trainable is set with :meth:`ImageEncoder.set_trainable`.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":  # up to 8 groups of at least 4 channels (valid down to 1×1 maps)
        return nn.GroupNorm(max(1, min(8, channels // 4)), channels)
    if kind == "batch":  # running statistics: what adapt_norm_stats re-estimates on the target (AdaBN)
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"image_encoder.norm must be 'group', 'batch' or 'none', got {kind!r}")


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions, the first with stride 2, plus a strided 1×1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, norm: str = "group"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=norm == "none")
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm == "none")
        self.norm2 = _norm(norm, c_out)
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=2, bias=norm == "none"), _norm(norm, c_out)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.shortcut(x))


def small_resnet_blocks(
    channels: Sequence[int] = (32, 32, 64, 128, 128), norm: str = "group", in_channels: int = 3
) -> list[nn.Module]:
    """Block 1 is a strided conv stem; blocks 2… are residual blocks; each halves the resolution."""
    stem = nn.Sequential(
        nn.Conv2d(in_channels, channels[0], 3, stride=2, padding=1, bias=norm == "none"),
        _norm(norm, channels[0]),
        nn.ReLU(inplace=True),
    )
    blocks: list[nn.Module] = [stem]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        blocks.append(ResidualBlock(c_in, c_out, norm))
    return blocks


def resnet50_blocks(pretrained: bool = True) -> list[nn.Module]:
    """ResNet-50 to res4f: stem, layer1 (res2), layer2 (res3), layer3 (res4), then a stride-2
    conv 1024→512 (the code's embedding-branch conv). ``block3`` is res3."""
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError(
            "image_encoder.backbone=resnet50 needs torchvision: install it with "
            "`pip install torchvision` (matching your torch build), or use backbone=small"
        )
    from torchvision.models import ResNet50_Weights, resnet50

    net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V1 if pretrained else None)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    extra = nn.Sequential(nn.Conv2d(1024, 512, 3, stride=2, padding=1), nn.ReLU(inplace=True))
    return [stem, net.layer1, net.layer2, net.layer3, extra]


class ImageEncoder(nn.Module):
    """G: images (B, C, H, W) in [0, 1] → latent pose code z (B, latent_dim) inside the box.

    ``features`` also returns the first FC activation (B, feat_dim), the LCR head's input
    (spec §5.2: the code's LCR head reads the first FC of the embedding branch).
    """

    def __init__(
        self,
        backbone: str = "small",
        image_size: int = 64,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 32, 64, 128, 128),
        norm: str = "group",
        feat_dim: int = 256,
        latent_dim: int = 32,
        latent_box: float = 1.0,
        pretrained: bool = True,
    ):
        super().__init__()
        if backbone == "small":
            blocks = small_resnet_blocks(channels, norm, in_channels)
            mean, std = 0.4, 1.0  # the code's `img/255 − 0.4`
        elif backbone == "resnet50":
            blocks = resnet50_blocks(pretrained)
            mean, std = 0.45, 0.226  # ImageNet statistics, averaged over channels
        else:
            raise ValueError(f"image_encoder.backbone must be 'small' or 'resnet50', got {backbone!r}")
        if latent_box <= 0:
            raise ValueError(f"image_encoder.latent_box must be > 0, got {latent_box}")
        self.blocks = nn.ModuleDict({f"block{i + 1}": b for i, b in enumerate(blocks)})
        self.mean, self.std = mean, std
        self.latent_box = float(latent_box)
        with torch.no_grad():
            n_flat = self.trunk(torch.zeros(2, in_channels, image_size, image_size)).flatten(1).shape[1]  # 2: BatchNorm
        for m in self.batch_norms():  # that probe must leave no statistics behind
            m.reset_running_stats()
        self.fc_feat = nn.Sequential(nn.Linear(n_flat, feat_dim), nn.ReLU())
        self.fc_latent = nn.Linear(feat_dim, latent_dim)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk_from(self.trunk_prefix(images, len(self.blocks)), len(self.blocks))

    def trunk_prefix(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """The normalised input through the first ``k`` blocks (k = 0: the normalised input)."""
        h = (images - self.mean) / self.std
        for block in list(self.blocks.values())[:k]:
            h = block(h)
        return h

    def trunk_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """The output of block ``k`` (see :meth:`trunk_prefix`) through the remaining blocks."""
        for block in list(self.blocks.values())[k:]:
            h = block(h)
        return h

    def head(self, trunk_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk output (B, C', H', W') → (first FC feature (B, feat_dim), z (B, latent_dim))."""
        feat = self.fc_feat(trunk_out.flatten(1))
        h = self.fc_latent(feat)
        return feat, self.latent_box * torch.tanh(h / self.latent_box)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W) → (first FC feature (B, feat_dim), z (B, latent_dim))."""
        return self.head(self.trunk(images))

    def train(self, mode: bool = True):
        """Parts without a trainable parameter stay in eval mode (their BatchNorm statistics stay)."""
        super().train(mode)
        for name in self.part_names:
            part = self.part(name)
            if not any(p.requires_grad for p in part.parameters()):
                part.eval()
        return self

    def frozen_prefix_len(self) -> int:
        """Number of leading trunk blocks without a trainable parameter: their output does not
        change during training, so it can be computed once per input."""
        for k, block in enumerate(self.blocks.values()):
            if any(p.requires_grad for p in block.parameters()):
                return k
        return len(self.blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)[1]

    def batch_norms(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def adapt_norm_stats(self, batches) -> int:
        """AdaBN (Li et al. 2016): replace every BatchNorm's running mean/variance by the statistics of
        ``batches`` (an iterable of image tensors (N, C, H, W)), a cumulative average over all of them;
        weights are untouched and the encoder's train/eval mode is restored. Returns the number of
        images seen (0 and nothing changed when G has no BatchNorm)."""
        norms = self.batch_norms()
        if not norms:
            return 0
        modes = [m.training for m in self.modules()]
        momenta = [m.momentum for m in norms]
        self.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
            m.train()
        n = 0
        for images in batches:
            self(images)
            n += len(images)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, mode in zip(self.modules(), modes):
            m.training = mode
        return n

    def encode_frames(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-frame encoding: clips (B, T, C, H, W) → z (B, T, latent_dim)."""
        b, t = clips.shape[:2]
        return self(clips.reshape(b * t, *clips.shape[2:])).reshape(b, t, -1)

    @property
    def part_names(self) -> list[str]:
        """Names accepted by :meth:`set_trainable`: the trunk blocks and ``embed`` (FC head)."""
        return [*self.blocks.keys(), "embed"]

    def part(self, name: str) -> nn.Module:
        if name == "embed":
            return nn.ModuleList([self.fc_feat, self.fc_latent])
        if name not in self.blocks:
            raise ValueError(f"unknown image-encoder part {name!r}; expected one of {self.part_names} or 'all'")
        return self.blocks[name]

    def set_trainable(self, parts: Sequence[str] | str) -> list[nn.Parameter]:
        """Freeze everything except ``parts`` (names from :attr:`part_names`, or ``"all"``);
        returns the trainable parameters."""
        names = self.part_names if parts == "all" or list(parts) == ["all"] else list(parts)
        self.requires_grad_(False)
        for name in names:
            self.part(name).requires_grad_(True)
        return [p for p in self.parameters() if p.requires_grad]
