"""Stage B: motion auto-encoder over 30-frame sequences of pose codes, trained through the
frozen pose decoder (pose-space MSE plus a latent MSE on the codes).

Training windows are drawn per clip from raw clips (B, 2L, 17, 3): stride 1 (a random L-frame
window) or stride 2 (``raw[::2]``) with probability ½ each, mirrored and time-reversed with
probability ½ each, so the encoder sees every view the relations use.
"""
from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.optim import Optimizer

from posedistill.metrics import MPJPE
from posedistill.models.motion_ae import MotionDecoder, MotionEncoder
from posedistill.skeleton import flip_pose
from posedistill.stages import UpstreamMixin, freeze, require_upstream


class MotionStage(UpstreamMixin, pl.LightningModule):
    """Stage B. ``encode(z_seq (B, L, latent)) -> v (B, dim_v)``, ``decode(v) -> z_seq``."""

    _frozen = ("prior",)

    def __init__(self, upstream: dict, hidden: int = 64, layers: int = 2, dim_v: int = 128, motion_box: float = 10.0,
                 seq_len: int = 30, pose_weight: float = 1.0, latent_weight: float = 1.0, lr: float = 1e-3,
                 seed: int = 0, optimizer: Callable[..., Optimizer] = torch.optim.Adam):
        super().__init__()
        require_upstream(upstream, ("prior",), "MotionStage")
        self.save_hyperparameters(ignore=["upstream", "optimizer"])
        self.make_optimizer = optimizer
        self.prior = freeze(upstream["prior"])
        latent = self.prior.latent_dim
        self.dim_v, self.seq_len = dim_v, seq_len
        self.encoder = MotionEncoder(latent, hidden, layers, dim_v, motion_box)
        self.decoder = MotionDecoder(latent, hidden, layers, dim_v, seq_len, self.prior.latent_box)
        self.val_mpjpe = MPJPE()
        self._gen: torch.Generator | None = None

    def encode(self, z_seq: torch.Tensor) -> torch.Tensor:
        return self.encoder(z_seq)

    def decode(self, v: torch.Tensor) -> torch.Tensor:
        return self.decoder(v)

    def pose_codes(self, poses: torch.Tensor) -> torch.Tensor:
        """(B, L, 17, 3) poses → (B, L, latent) codes from the frozen pose encoder."""
        with torch.no_grad():
            return self.prior.encode(poses.flatten(0, 1)).unflatten(0, poses.shape[:2])

    def encode_poses(self, poses: torch.Tensor) -> torch.Tensor:
        """(B, L, 17, 3) → (B, dim_v)."""
        return self.encode(self.pose_codes(poses))

    def _generator(self) -> torch.Generator:
        if self._gen is None or self._gen.device != self.device:
            self._gen = torch.Generator(device=self.device).manual_seed(self.hparams.seed)
        return self._gen

    def _windows(self, raw: torch.Tensor) -> torch.Tensor:
        """Random augmented L-frame windows (B, L, 17, 3) from raw clips (B, T, 17, 3)."""
        b, t = raw.shape[:2]
        L, g, dev = self.seq_len, self._generator(), self.device
        stride2 = torch.rand(b, generator=g, device=dev) < 0.5
        start = (torch.rand(b, generator=g, device=dev) * (t - L + 1)).long()
        start = torch.where(stride2, torch.zeros_like(start), start)
        idx = start[:, None] + torch.arange(L, device=dev)[None] * torch.where(stride2, 2, 1)[:, None]
        idx = idx.clamp_max(t - 1)
        seq = torch.gather(raw, 1, idx[:, :, None, None].expand(b, L, *raw.shape[2:]))
        flip = torch.rand(b, generator=g, device=dev) < 0.5
        seq = torch.where(flip[:, None, None, None], flip_pose(seq, self.prior.skeleton), seq)
        rev = torch.rand(b, generator=g, device=dev) < 0.5
        return torch.where(rev[:, None, None, None], seq.flip(1), seq)

    def _losses(self, seq: torch.Tensor):
        z = self.pose_codes(seq)
        z_hat = self.decode(self.encode(z))
        pose_hat = self.prior.decode(z_hat.flatten(0, 1)).unflatten(0, z.shape[:2])
        target = self.prior.target(seq)
        pose_mse = ((pose_hat - target) / 1000.0).pow(2).mean()
        latent_mse = (z_hat - z).pow(2).mean()
        return pose_mse, latent_mse, pose_hat, target

    def training_step(self, batch, batch_idx):
        pose_mse, latent_mse, _, _ = self._losses(self._windows(batch.poses))
        loss = self.hparams.pose_weight * pose_mse + self.hparams.latent_weight * latent_mse
        self.log_dict({"train/loss": loss, "train/pose_mse_m2": pose_mse, "train/latent_mse": latent_mse}, prog_bar=True)
        return loss

    def _eval_step(self, batch, split):
        raw, L = batch.poses, self.seq_len
        for seq in (raw[:, ::2][:, :L], raw[:, L // 2 : L // 2 + L]):  # double speed and normal speed
            pose_mse, latent_mse, pose_hat, target = self._losses(seq)
            self.val_mpjpe.update(pose_hat.flatten(0, 1), target.flatten(0, 1))
            self.log_dict({f"{split}/loss": pose_mse + latent_mse, f"{split}/latent_mse": latent_mse},
                          on_epoch=True, batch_size=len(raw))

    def _eval_end(self, split):
        self.log(f"{split}/mpjpe", self.val_mpjpe.compute())
        self.val_mpjpe.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._eval_end("test")

    def configure_optimizers(self):
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return self.make_optimizer(params, lr=self.hparams.lr)
