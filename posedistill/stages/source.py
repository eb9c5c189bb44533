"""Stage D: the source image → latent network G^s, supervised through the frozen decoder.

Loss ``mean |D_p(G^s(x^s)) − y^s|`` (spec §7, the code's mean L1, in mm). Augmentation: colour
jitter with probability ``jitter_p`` and a horizontal flip with probability ``flip_p`` (image flip
with the matching pose flip; our renderer guarantees image flip == pose flip, so the code's 180°
yaw fix is not needed). The code's ±10° in-plane tilt is not used. ``appearance_p``: probability of
:func:`~posedistill.losses.contrastive.random_appearance` (random tint and smooth random background
behind a person rendered on black; synthetic source only, 0 for real images). Upstream: ``prior``
(``decode``, ``latent_box``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from posedistill.losses.contrastive import pose_invariant_augment, random_appearance
from posedistill.models.image_encoder import ImageEncoder
from posedistill.skeleton import flip_pose
from posedistill.stages import UpstreamMixin, freeze, require_upstream
from posedistill.stages.pose_eval import PoseEvalModule


class SourceStage(UpstreamMixin, PoseEvalModule):
    """G^s trained on labelled source frames (``ImageBatch``); evaluated on target test clips."""

    _frozen = ("prior",)

    def __init__(
        self,
        upstream: Mapping[str, nn.Module],
        encoder: Mapping[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        flip_p: float = 0.4,
        jitter_p: float = 0.3,
        appearance_p: float = 0.0,
        skeleton: str = "paper17",
        seed: int = 0,
        optimizer: Callable[..., Optimizer] = torch.optim.Adam,
        **dims: Any,
    ):
        super().__init__(skeleton, dims.get("eval_joints"))
        require_upstream(upstream, ("prior",), "SourceStage")
        self.save_hyperparameters(ignore=["upstream", "optimizer"])
        self.make_optimizer = optimizer
        self.prior = freeze(upstream["prior"])
        enc_kw = dict(encoder or {})
        if "image_size" in dims:
            enc_kw.setdefault("image_size", dims["image_size"])
        self.encoder = ImageEncoder(**enc_kw, latent_box=float(self.prior.latent_box))
        self._gen = torch.Generator().manual_seed(seed)

    def predict_pose(self, images: torch.Tensor) -> torch.Tensor:
        return self.prior.decode(self.encoder(images))

    def augment(self, images: torch.Tensor, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W), poses (B, J, 3) → the same, some flipped, re-textured and colour-jittered."""
        b = images.shape[0]
        flip = (torch.rand(b, generator=self._gen) < self.hparams.flip_p).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        poses = torch.where(flip[:, None, None], flip_pose(poses, self.skeleton), poses)
        if self.hparams.appearance_p > 0:
            new = (torch.rand(b, generator=self._gen) < self.hparams.appearance_p).to(images.device)
            images = torch.where(new[:, None, None, None], random_appearance(images, self._gen), images)
        jitter = (torch.rand(b, generator=self._gen) < self.hparams.jitter_p).to(images.device)
        images = torch.where(jitter[:, None, None, None], pose_invariant_augment(images, self._gen), images)
        return images, poses

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, poses = self.augment(batch.images, batch.poses)
        loss = (self.predict_pose(images) - poses).abs().mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        return self.make_optimizer(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
