"""Shared evaluation of the image → pose stages (D, E and the baselines) on labelled target clips.

Inference is per frame, ``ŷ = D_p(G(x))`` (spec §1.2). Val/test batches are ``ImageBatch``
(images (B, C, H, W), poses (B, J, 3)) or ``ClipBatch`` (images (B, T, C, H, W), poses
(B, T, J, 3)); clips are flattened to frames. Metrics are P1's torchmetrics
(``posedistill.metrics``), logged as ``<split>/<name>`` at the end of the epoch; the
``*_gtbones`` variants first give the prediction the ground-truth bone lengths (the released
code's evaluation), the others use the prediction as is. ``n_examples`` test frames (every
``example_stride``-th, prediction and ground truth) are saved to ``<run dir>/test_examples.npz``
for qualitative figures. ``eval_joints`` (a datamodule's ``dims``, e.g. the 15 joints MPI-INF-3DHP
shares with paper17, root first) restricts every metric to those joints, alignment included.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from posedistill import metrics as pose_metrics
from posedistill.skeleton import get_skeleton


def build_pose_metrics(n_joints: int) -> nn.ModuleDict:
    """name → metric for poses of ``n_joints`` evaluated joints; names ending in ``_gtbones`` are fed
    GT-bone-length predictions. ``pose_spread_ratio`` (predicted / true pose variety) shows a G that
    collapses towards one pose, which the error metrics alone do not tell apart from a G that is
    merely wrong."""
    return nn.ModuleDict(
        {
            "mpjpe": pose_metrics.MPJPE(),
            "mpjpe_gtbones": pose_metrics.MPJPE(),
            "pa_mpjpe": pose_metrics.PAMPJPE(),
            "pa_mpjpe_gtbones": pose_metrics.PAMPJPE(),
            "n_mpjpe": pose_metrics.NMPJPE(),
            "pck": pose_metrics.PCK3D(),
            "auc": pose_metrics.AUC3D(),
            "pose_spread_ratio": pose_metrics.PoseSpreadRatio(n_joints),
        }
    )


def frames_of(images: torch.Tensor, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, C, H, W), (B, T, J, 3) → (B·T, C, H, W), (B·T, J, 3); frame batches pass through."""
    if images.ndim == 5:
        return images.flatten(0, 1), poses.flatten(0, 1)
    if images.ndim == 4:
        return images, poses
    raise ValueError(f"evaluation batch images must be (B, C, H, W) or (B, T, C, H, W), got {tuple(images.shape)}")


class PoseEvalModule(pl.LightningModule):
    """Base class: subclasses implement ``predict_pose(images (N, C, H, W)) -> (N, J, 3)``;
    ``skeleton`` names the pose skeleton (flips, GT-bone rescaling); ``eval_joints`` the evaluated
    joints (None: all), whose first must be the root."""

    n_examples = 64
    example_stride = 30

    def __init__(self, skeleton: str = "paper17", eval_joints: Sequence[int] | None = None) -> None:
        super().__init__()
        self.skeleton = get_skeleton(skeleton)
        if eval_joints is not None and list(eval_joints)[:1] != [0]:
            raise ValueError(f"eval_joints must start with the root joint 0, got {list(eval_joints)}")
        self.eval_joints = None if eval_joints is None else list(eval_joints)
        n_joints = self.skeleton.n_joints if self.eval_joints is None else len(self.eval_joints)
        self.metrics = nn.ModuleDict({split: build_pose_metrics(n_joints) for split in ("val", "test")})
        self._examples: list[tuple[np.ndarray, np.ndarray]] = []

    def predict_pose(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _eval_step(self, batch, split: str) -> None:
        images, poses = frames_of(batch.images, batch.poses)
        with torch.no_grad():
            pred = self.predict_pose(images)
            pred_gtbones = pose_metrics.rescale_to_gt_bones(pred, poses, self.skeleton)
        evaluated = (pred, pred_gtbones, poses)
        if self.eval_joints is not None:  # (N, J, 3) → (N, J_eval, 3)
            evaluated = tuple(x[:, self.eval_joints] for x in evaluated)
        for name, metric in self.metrics[split].items():
            metric.update(evaluated[1] if name.endswith("_gtbones") else evaluated[0], evaluated[2])
        if split == "test" and sum(len(p) for p, _ in self._examples) < self.n_examples:
            k = self.example_stride
            self._examples.append((pred[::k].cpu().numpy(), poses[::k].cpu().numpy()))

    def _eval_epoch_end(self, split: str) -> None:
        for name, metric in self.metrics[split].items():
            self.log(f"{split}/{name}", metric.compute(), prog_bar=name == "pa_mpjpe")
            metric.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._examples = []

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
        if self._examples and self.trainer is not None and self.trainer.default_root_dir:
            pred = np.concatenate([p for p, _ in self._examples])[: self.n_examples]
            true = np.concatenate([t for _, t in self._examples])[: self.n_examples]
            out = Path(self.trainer.default_root_dir) / "test_examples.npz"
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, pred=pred, true=true)

