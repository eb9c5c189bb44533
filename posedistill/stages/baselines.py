"""Baselines for stage E, all starting from G^s and training the same configurable encoder parts.

- source only / contrastive only ("Ours-LL"): :class:`~posedistill.stages.adapt.AdaptStage` with
  ``energies: []`` / ``[lcr, hcr]``.
- :class:`PseudoLabelStage`: self-training on pseudo-labels ``D_p(G^s(x))`` of target frames, kept
  where G^s is flip-consistent (the most consistent ``keep_fraction`` of each batch), fitted on a
  pose-invariant augmented view.
- :class:`DANNStage`: source supervision plus feature-adversarial alignment (gradient reversal on
  the first FC feature), on ``{"source": ImageBatch, "target": ClipBatch}`` batches from
  :class:`~posedistill.data.PairedClipDataModule`.
- :class:`OracleStage`: supervised on the target clips' ground-truth poses (an upper bound).
Upstream: ``prior`` (decode), ``source`` (encoder).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from posedistill.data import split_paired
from posedistill.losses.adversarial import domain_loss, grad_reverse
from posedistill.losses.contrastive import pose_invariant_augment
from posedistill.models.heads import DomainClassifier
from posedistill.skeleton import flip_pose
from posedistill.stages import UpstreamMixin, freeze, require_upstream
from posedistill.stages.pose_eval import PoseEvalModule


class _FinetuneStage(UpstreamMixin, PoseEvalModule):
    """G copied from G^s with only ``trainable`` parts free; subclasses define ``loss(batch)``."""

    _frozen: tuple[str, ...] = ("prior",)

    def __init__(self, upstream: Mapping[str, nn.Module], trainable: Sequence[str] | str, lr: float, seq_len: int,
                 skeleton: str, seed: int, eval_joints: Sequence[int] | None = None,
                 optimizer: Callable[..., Optimizer] = torch.optim.Adam):
        super().__init__(skeleton, eval_joints)
        require_upstream(upstream, ("prior", "source"), type(self).__name__)
        self.prior = freeze(upstream["prior"])
        self.encoder = copy.deepcopy(upstream["source"].encoder)
        self.encoder.set_trainable(trainable)
        self.lr, self.seq_len, self.make_optimizer = lr, seq_len, optimizer
        self._gen = torch.Generator().manual_seed(seed)

    def predict_pose(self, images: torch.Tensor) -> torch.Tensor:
        return self.prior.decode(self.encoder(images))

    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return self.make_optimizer([p for p in self.parameters() if p.requires_grad], lr=self.lr)


class PseudoLabelStage(_FinetuneStage):
    """Self-training on flip-consistent pseudo-labels from the frozen source model."""

    _frozen = ("prior", "teacher")

    def __init__(
        self,
        upstream: Mapping[str, nn.Module],
        trainable: Sequence[str] | str = ("block3",),
        lr: float = 1e-4,
        keep_fraction: float = 0.5,
        skeleton: str = "paper17",
        seq_len: int = 30,
        augment: Mapping[str, Any] | None = None,
        seed: int = 0,
        optimizer: Callable[..., Optimizer] = torch.optim.Adam,
        **dims: Any,
    ):
        super().__init__(upstream, trainable, lr, seq_len, skeleton, seed, dims.get("eval_joints"), optimizer)
        self.save_hyperparameters(ignore=["upstream", "optimizer"])
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"model.keep_fraction must be in (0, 1], got {keep_fraction}")
        self.teacher = freeze(copy.deepcopy(upstream["source"].encoder))
        self.augment_kw = dict(augment or {})

    def loss(self, batch) -> torch.Tensor:
        batch = split_paired(batch)[0]
        frames = batch.images[:, : self.seq_len].flatten(0, 1)  # (B·T, C, H, W)
        with torch.no_grad():
            label = self.prior.decode(self.teacher(frames))
            mirrored = flip_pose(self.prior.decode(self.teacher(frames.flip(-1))), self.skeleton)
            inconsistency = (label - mirrored).norm(dim=-1).mean(-1)  # (B·T,)
            n_keep = max(1, int(round(self.hparams.keep_fraction * len(frames))))
            keep = inconsistency.topk(n_keep, largest=False).indices
        view = pose_invariant_augment(frames[keep], self._gen, **self.augment_kw)
        return (self.predict_pose(view) - label[keep]).abs().mean()


class OracleStage(_FinetuneStage):
    """Supervised fine-tuning on the target clips' ground-truth poses (uses target labels)."""

    def __init__(
        self,
        upstream: Mapping[str, nn.Module],
        trainable: Sequence[str] | str = "all",
        lr: float = 3e-4,
        seq_len: int = 30,
        skeleton: str = "paper17",
        seed: int = 0,
        optimizer: Callable[..., Optimizer] = torch.optim.Adam,
        **dims: Any,
    ):
        super().__init__(upstream, trainable, lr, seq_len, skeleton, seed, dims.get("eval_joints"), optimizer)
        self.save_hyperparameters(ignore=["upstream", "optimizer"])

    def loss(self, batch) -> torch.Tensor:
        batch = split_paired(batch)[0]
        frames = batch.images[:, : self.seq_len].flatten(0, 1)
        poses = batch.poses[:, : self.seq_len].flatten(0, 1)
        return (self.predict_pose(frames) - poses).abs().mean()


class DANNStage(_FinetuneStage):
    """Source L1 through the frozen decoder + a domain classifier on the first FC feature behind
    a gradient-reversal layer (weight ``adv_weight``); batches are ``{"source": ImageBatch, "target": ClipBatch}``."""

    def __init__(
        self,
        upstream: Mapping[str, nn.Module],
        trainable: Sequence[str] | str = ("block3",),
        lr: float = 1e-4,
        adv_weight: float = 0.1,
        frames_per_clip: int = 4,
        classifier_hidden: Sequence[int] = (256, 256),
        seq_len: int = 30,
        skeleton: str = "paper17",
        seed: int = 0,
        optimizer: Callable[..., Optimizer] = torch.optim.Adam,
        **dims: Any,
    ):
        super().__init__(upstream, trainable, lr, seq_len, skeleton, seed, dims.get("eval_joints"), optimizer)
        self.save_hyperparameters(ignore=["upstream", "optimizer"])
        self.domain = DomainClassifier(self.encoder.fc_latent.in_features, classifier_hidden)

    def loss(self, batch) -> torch.Tensor:
        target, source, _ = split_paired(batch)
        if source is None:
            raise ValueError("DANNStage needs labelled source frames in each batch: use the data module "
                             "posedistill.data.PairedClipDataModule with data.source")
        t_frames = target.images[:, : self.seq_len]
        idx = torch.randint(0, t_frames.shape[1], (self.hparams.frames_per_clip,), generator=self._gen)
        t_frames = t_frames[:, idx.to(t_frames.device)].flatten(0, 1)  # (B·k, C, H, W)
        feat_s, z_s = self.encoder.features(source.images)
        feat_t, _ = self.encoder.features(t_frames)
        sup = (self.prior.decode(z_s) - source.poses).abs().mean()
        scale = self.hparams.adv_weight
        adv = domain_loss(self.domain(grad_reverse(feat_s, scale)), self.domain(grad_reverse(feat_t, scale)))
        self.log("train/domain_loss", adv)
        self.log("train/source_l1", sup)
        return sup + adv
