"""Stage C: relation transformers T^z_r (pose codes) and T^v_r (motion codes) for the candidate
relations, regressed on unpaired pose clips through the frozen pose and motion encoders.

``space='latent'`` (paper, default): MSE(T(z), E(T^y(y))). ``space='pose'`` (released code's pose
rule): MSE(D_p(T^z(z)), T^y(y)) for pose relations; motion relations are always latent.
Raw clips are mirrored and time-reversed with probability ½ each before the pairs are formed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim import Optimizer

from posedistill.data.transforms import MOTION_RELATIONS, POSE_RELATIONS, motion_pair, pose_transform
from posedistill.models.relation_transformers import RelationTransformer
from posedistill.skeleton import flip_pose
from posedistill.stages import UpstreamMixin, freeze, require_upstream


class RelationStage(UpstreamMixin, pl.LightningModule):
    """Stage C. ``pose_relation(name)(z) -> z'`` and ``motion_relation(name)(v) -> v'``."""

    _frozen = ("prior", "motion")

    def __init__(self, upstream: dict, pose_relations: Sequence[str] = POSE_RELATIONS,
                 motion_relations: Sequence[str] = MOTION_RELATIONS, pose_hidden: Sequence[int] = (256, 256),
                 motion_hidden: Sequence[int] = (512, 256), space: str = "latent", frames_per_clip: int = 8,
                 lr: float = 1e-3, seed: int = 0, optimizer: Callable[..., Optimizer] = torch.optim.Adam):
        super().__init__()
        require_upstream(upstream, ("prior", "motion"), "RelationStage")
        if space not in ("latent", "pose"):
            raise ValueError(f"RelationStage: space must be 'latent' or 'pose', got {space!r}")
        # plain types so that checkpoints load with weights_only=True (Hydra passes ListConfig)
        pose_relations, motion_relations = tuple(pose_relations), tuple(motion_relations)
        pose_hidden, motion_hidden = tuple(pose_hidden), tuple(motion_hidden)
        self.save_hyperparameters(ignore=["upstream", "optimizer"])
        self.make_optimizer = optimizer
        self.prior = freeze(upstream["prior"])
        self.motion = freeze(upstream["motion"])
        self.pose_names, self.motion_names = list(pose_relations), list(motion_relations)
        self.pose_rel = nn.ModuleDict({r: RelationTransformer(self.prior.latent_dim, pose_hidden, self.prior.latent_box)
                                       for r in self.pose_names})
        self.motion_rel = nn.ModuleDict({r: RelationTransformer(self.motion.dim_v, motion_hidden,
                                                                self.motion.hparams.motion_box)
                                         for r in self.motion_names})
        self._gen: torch.Generator | None = None

    def pose_relation(self, name: str) -> nn.Module:
        if name not in self.pose_rel:
            raise KeyError(f"no pose relation {name!r}; trained: {self.pose_names}")
        return self.pose_rel[name]

    def motion_relation(self, name: str) -> nn.Module:
        if name not in self.motion_rel:
            raise KeyError(f"no motion relation {name!r}; trained: {self.motion_names}")
        return self.motion_rel[name]

    # -- codes of transformed entities -------------------------------------------------------------
    @torch.no_grad()
    def pose_pairs(self, poses: torch.Tensor, name: str):
        """(z, z⁺) codes of poses (N, 17, 3) and of their transform ``name``."""
        sk = self.prior.skeleton
        return self.prior.encode(poses), self.prior.encode(pose_transform(name, poses, sk))

    @torch.no_grad()
    def motion_pairs(self, raw: torch.Tensor, name: str):
        """(v, v⁺) motion codes of anchor and positive of relation ``name`` from raw clips (B, 2L, 17, 3)."""
        sk = self.prior.skeleton
        a, p = motion_pair(name, raw, lambda x: flip_pose(x, sk))
        return self.motion.encode_poses(a), self.motion.encode_poses(p)

    # -- training ----------------------------------------------------------------------------------
    def _generator(self) -> torch.Generator:
        if self._gen is None or self._gen.device != self.device:
            self._gen = torch.Generator(device=self.device).manual_seed(self.hparams.seed)
        return self._gen

    def _augment(self, raw: torch.Tensor) -> torch.Tensor:
        g, b = self._generator(), len(raw)
        flip = torch.rand(b, generator=g, device=self.device) < 0.5
        raw = torch.where(flip[:, None, None, None], flip_pose(raw, self.prior.skeleton), raw)
        rev = torch.rand(b, generator=g, device=self.device) < 0.5
        return torch.where(rev[:, None, None, None], raw.flip(1), raw)

    def _frames(self, raw: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``frames_per_clip`` random frames per clip → (B·k, 17, 3)."""
        b, t = raw.shape[:2]
        k = self.hparams.frames_per_clip
        idx = torch.randint(0, t, (b, k), generator=generator, device=self.device)
        return torch.gather(raw, 1, idx[:, :, None, None].expand(b, k, *raw.shape[2:])).flatten(0, 1)

    def _losses(self, raw: torch.Tensor, generator: torch.Generator | None):
        """Per-relation regression losses and the identity baseline ‖z − z⁺‖² (for relative errors)."""
        out = {}
        poses = self._frames(raw, generator)
        for r in self.pose_names:
            z, zp = self.pose_pairs(poses, r)
            pred = self.pose_rel[r](z)
            if self.hparams.space == "latent":
                loss = (pred - zp).pow(2).mean()
            else:
                target = self.prior.target(pose_transform(r, poses, self.prior.skeleton))
                loss = ((self.prior.decode(pred) - target) / 1000.0).pow(2).mean()
            out[f"pose_{r}"] = (loss, (z - zp).pow(2).mean(), (pred - zp).pow(2).mean())
        for r in self.motion_names:
            v, vp = self.motion_pairs(raw, r)
            pred = self.motion_rel[r](v)
            mse = (pred - vp).pow(2).mean()
            out[f"motion_{r}"] = (mse, (v - vp).pow(2).mean(), mse)
        return out

    def training_step(self, batch, batch_idx):
        losses = self._losses(self._augment(batch.poses), self._generator())
        loss = sum(v[0] for v in losses.values())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch, split):
        g = torch.Generator(device=self.device).manual_seed(self.hparams.seed + 1)
        losses = self._losses(batch.poses, g)
        b = len(batch.poses)
        self.log(f"{split}/loss", sum(v[0] for v in losses.values()), on_epoch=True, batch_size=b)
        for name, (_, base, mse) in losses.items():
            # relative error: 1 - (regression MSE / identity MSE); 1 is perfect, 0 is "T = identity"
            self.log(f"{split}/{name}_mse", mse, on_epoch=True, batch_size=b)
            self.log(f"{split}/{name}_gain", 1 - mse / base.clamp_min(1e-12), on_epoch=True, batch_size=b)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        params = list(self.pose_rel.parameters()) + list(self.motion_rel.parameters())
        return self.make_optimizer(params, lr=self.hparams.lr)
