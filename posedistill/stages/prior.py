"""Stage A: pose-prior adversarial auto-encoder with a box latent.

Options (spec §14.1): ``discriminator='latent'`` (paper: AAE on E_p(y) vs U[-box, box]^d samples)
or ``'pose'`` (released code: pose-space discriminator on D_p(z_rand)); ``cycles`` adds the
z-cycle |E_p(D_p(z_rand)) − z_rand| (the x-cycle is the reconstruction); ``gan_loss`` 'bce' or the
code's least-absolute 'l1' with ±1 targets. The reconstruction target is the input pose
retargeted onto the canonical skeleton when ``output='bones'`` (the prior's pose space).
Manual optimisation: one optimiser (``optimizer``, Adam) for E_p+D_p, one for the discriminator,
updated every step; a ``scheduler`` (e.g. cosine decay) follows the stage's optimiser steps
(the code's accuracy-switched alternation is replaced by simultaneous updates after a
reconstruction-only warm-up of ``warmup_steps``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from posedistill.metrics import MPJPE, PAMPJPE
from posedistill.models.discriminators import LatentDiscriminator, PoseDiscriminator
from posedistill.models.pose_prior import PoseDecoder, PoseEncoder
from posedistill.skeleton import bone_lengths, canonicalize, flip_pose, get_skeleton


def gan_d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    return 0.5 * ((real - 1).abs().mean() + (fake + 1).abs().mean())


def gan_g_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    return (fake - 1).abs().mean()


class PosePriorStage(pl.LightningModule):
    """Stage A. ``encode(pose (B, 17, 3)) -> z (B, latent)``, ``decode(z) -> pose``, ``latent_box``."""

    def __init__(self, skeleton: str = "paper17", latent_dim: int = 32, latent_box: float = 1.0,
                 hidden: Sequence[int] = (256, 256), output: str = "bones", discriminator: str = "latent",
                 cycles: bool = False, gan_loss: str = "bce", rec_weight: float = 1.0, cycle_weight: float = 1.0,
                 adv_weight: float = 0.01, disc_hidden: Sequence[int] = (256, 256), lr: float = 1e-3,
                 lr_disc: float = 1e-3, warmup_steps: int = 500, flip_p: float = 0.5, grad_clip: float = 1.0,
                 seed: int = 0, optimizer: Callable[..., Optimizer] = partial(torch.optim.Adam, betas=(0.5, 0.999)),
                 scheduler: Optional[Callable[..., LRScheduler]] = None):
        super().__init__()
        if discriminator not in ("latent", "pose"):
            raise ValueError(f"PosePriorStage: discriminator must be 'latent' or 'pose', got {discriminator!r}")
        if gan_loss not in ("bce", "l1"):
            raise ValueError(f"PosePriorStage: gan_loss must be 'bce' or 'l1', got {gan_loss!r}")
        hidden, disc_hidden = tuple(hidden), tuple(disc_hidden)  # plain types: checkpoints load weights_only
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.automatic_optimization = False
        self.skeleton = get_skeleton(skeleton)
        self.latent_box = float(latent_box)
        self.latent_dim = latent_dim
        self.encoder = PoseEncoder(self.skeleton, latent_dim, hidden, latent_box)
        self.decoder = PoseDecoder(self.skeleton, latent_dim, hidden, output)
        self.disc = (LatentDiscriminator(latent_dim, disc_hidden) if discriminator == "latent"
                     else PoseDiscriminator(self.skeleton, disc_hidden))
        self.val_mpjpe, self.val_mpjpe_raw, self.val_pa = MPJPE(), MPJPE(), PAMPJPE()
        self._gen: torch.Generator | None = None

    # -- public API used by later stages -------------------------------------------------------
    def encode(self, pose: torch.Tensor) -> torch.Tensor:
        return self.encoder(pose)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def target(self, pose: torch.Tensor) -> torch.Tensor:
        """The pose the prior should reproduce (canonical bone lengths for ``output='bones'``)."""
        return canonicalize(pose, self.skeleton) if self.hparams.output == "bones" else pose

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(n, self.latent_dim, generator=generator or self._generator(), device=self.device)
        return (2 * u - 1) * self.latent_box

    # -- training --------------------------------------------------------------------------------
    def _generator(self) -> torch.Generator:
        if self._gen is None or self._gen.device != self.device:
            self._gen = torch.Generator(device=self.device).manual_seed(self.hparams.seed)
        return self._gen

    def _augment(self, pose: torch.Tensor) -> torch.Tensor:
        m = torch.rand(len(pose), generator=self._generator(), device=self.device) < self.hparams.flip_p
        return torch.where(m[:, None, None], flip_pose(pose, self.skeleton), pose)

    def training_step(self, batch, batch_idx):
        h = self.hparams
        opt_ae, opt_d = self.optimizers()
        self._follow_schedules()
        pose = self._augment(batch.poses)
        target = self.target(pose)
        z_rand = self.sample_latent(len(pose))
        # discriminator
        with torch.no_grad():
            z = self.encoder(pose)
            fake_in = z if h.discriminator == "latent" else self.decoder(z_rand)
            real_in = z_rand if h.discriminator == "latent" else pose
        d_loss = gan_d_loss(self.disc(real_in), self.disc(fake_in), h.gan_loss)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        self.clip_gradients(opt_d, h.grad_clip, "norm")
        opt_d.step()
        # auto-encoder
        z = self.encoder(pose)
        rec = (self.decoder(z) - target).abs().mean() / 1000.0
        loss = h.rec_weight * rec
        if h.cycles:
            zcyc = (self.encoder(self.decoder(z_rand)) - z_rand).abs().mean() / self.latent_box
            loss = loss + h.cycle_weight * zcyc
            self.log("train/z_cycle", zcyc)
        adv = gan_g_loss(self.disc(z if h.discriminator == "latent" else self.decoder(z_rand)), h.gan_loss)
        if self.global_step >= h.warmup_steps:
            loss = loss + h.adv_weight * adv
        opt_ae.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(opt_ae, h.grad_clip, "norm")
        opt_ae.step()
        self.log_dict({"train/loss": loss, "train/rec_l1_m": rec, "train/adv": adv, "train/disc": d_loss}, prog_bar=True)
        return loss

    def _follow_schedules(self) -> None:
        """Bring both optimisers' schedules to the stage's global step (which counts the steps of both)."""
        for scheduler in self.lr_schedulers() or []:
            while scheduler.last_epoch < self.global_step:
                scheduler.step()

    def configure_optimizers(self):
        """The auto-encoder's and the discriminator's optimisers (rates ``lr``, ``lr_disc``), each with a
        schedule over the trainer's total optimiser steps when ``scheduler`` is set."""
        ae = list(self.encoder.parameters()) + list(self.decoder.parameters())
        optimizers = [self.make_optimizer(ae, lr=self.hparams.lr),
                      self.make_optimizer(self.disc.parameters(), lr=self.hparams.lr_disc)]
        if self.make_scheduler is None:
            return optimizers
        total = self.trainer.estimated_stepping_batches
        return optimizers, [self.make_scheduler(opt, total_steps=total) for opt in optimizers]

    # -- evaluation ------------------------------------------------------------------------------
    def bone_ratio_error(self, n: int = 1024) -> torch.Tensor:
        """Max relative deviation of bone-length ratios (bone / total) of poses decoded from
        uniform random latents, vs the skeleton's canonical ratios."""
        g = torch.Generator(device=self.device).manual_seed(self.hparams.seed + 1)
        lengths = bone_lengths(self.decode(self.sample_latent(n, g)), self.skeleton)
        canon = torch.as_tensor(self.skeleton.canonical_bones, device=self.device)
        ratio = lengths / lengths.sum(-1, keepdim=True)
        ref = canon / canon.sum()
        return ((ratio - ref).abs() / ref).max()

    def _eval_step(self, batch, split: str):
        pose = batch.poses
        rec = self.decode(self.encode(pose))
        self.val_mpjpe.update(rec, self.target(pose))
        self.val_mpjpe_raw.update(rec, pose)
        self.val_pa.update(rec, pose)

    def _eval_end(self, split: str):
        self.log_dict({f"{split}/mpjpe": self.val_mpjpe.compute(), f"{split}/mpjpe_raw": self.val_mpjpe_raw.compute(),
                       f"{split}/pa_mpjpe": self.val_pa.compute(), f"{split}/bone_ratio_err": self.bone_ratio_error()})
        for m in (self.val_mpjpe, self.val_mpjpe_raw, self.val_pa):
            m.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._eval_end("test")
