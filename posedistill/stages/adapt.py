"""Stage E: self-adaptation of G on unlabelled target clips by latent relation distillation.

Energies (spec §5, eq. (4)); which ones are on is ``energies`` (a list, in round-robin order):

- ``lcr``: InfoNCE on the LCR head of the first FC feature of frame 0 of each clip vs its
  pose-invariant augmented view; the other clips' anchors are the negatives.
- ``hcr``: InfoNCE on the HCR head of the motion code v = E_m(G(X)) of each clip vs its augmented clip.
- ``flip``: mean |T^z_flip(G(x)) − G(flip x)| over every frame, gradients through both branches.
- ``flip_backward``: mean |T^v_fb(E_m(G(X))) − sg E_m(G(X⁺))|, X⁺ = frames flipped, order reversed.
- ``slow_backward``: mean |T^v_sb(E_m(G(raw[::2]))) − sg E_m(G(reverse(raw[15:45])))|.

Each energy has its own Adam over the trainable encoder parts (default ``block3``, the res3
analogue) plus its own head; one energy is stepped per training batch, in turn (Lightning
manual optimisation). X is the first ``seq_len`` frames of each target clip; slow-backward needs
``2·seq_len`` frames. An empty ``energies`` list leaves G = G^s (the source-only rung).
Upstream: ``prior`` (decode), ``motion`` (encode), ``relations`` (pose_relation,
motion_relation), ``source`` (encoder).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from posedistill.losses.contrastive import info_nce, pose_invariant_augment
from posedistill.losses.relations import flip_backward_clip, flip_images, relation_energy, slow_backward_pair
from posedistill.models.heads import ProjectionHead
from posedistill.stages import UpstreamMixin, freeze, require_upstream
from posedistill.stages.pose_eval import PoseEvalModule

ENERGIES = ("lcr", "hcr", "flip", "flip_backward", "slow_backward")
# the code's learning rates (real data): contrastive 2e-5, non-local 1e-5
CODE_LR = {"lcr": 2e-5, "hcr": 2e-5, "flip": 1e-5, "flip_backward": 1e-5, "slow_backward": 1e-5}


class AdaptStage(UpstreamMixin, PoseEvalModule):
    """G initialised from G^s, adapted with round-robin relation energies (one Adam each)."""

    _frozen = ("prior", "motion", "relations")

    def __init__(
        self,
        upstream: Mapping[str, nn.Module],
        energies: Sequence[str] = ENERGIES,
        trainable: Sequence[str] | str = ("block3",),
        lr: Mapping[str, float] | None = None,
        temperature: float = 0.07,
        contrastive_anchor: str = "all",
        head_hidden: Sequence[int] = (512, 256),
        head_dim: int = 128,
        seq_len: int = 30,
        grad_clip: float | None = 1.0,
        augment: Mapping[str, Any] | None = None,
        skeleton: str = "paper17",
        seed: int = 0,
        **dims: Any,
    ):
        super().__init__(skeleton)
        require_upstream(upstream, ("prior", "motion", "relations", "source"), "AdaptStage")
        self.save_hyperparameters(ignore=["upstream"])
        unknown = [e for e in energies if e not in ENERGIES]
        if unknown:
            raise ValueError(f"model.energies: unknown {unknown}; expected a subset of {list(ENERGIES)}")
        self.energies = list(energies)
        self.lr = {**CODE_LR, **dict(lr or {})}
        self.prior, self.motion, self.relations = (freeze(upstream[n]) for n in ("prior", "motion", "relations"))
        self.encoder = copy.deepcopy(upstream["source"].encoder)
        self.encoder.set_trainable(trainable)
        self.heads = nn.ModuleDict()
        if "lcr" in self.energies:
            self.heads["lcr"] = ProjectionHead(self.encoder.fc_latent.in_features, head_hidden, head_dim)
        if "hcr" in self.energies:
            with torch.no_grad():
                z = torch.zeros(1, seq_len, self.encoder.fc_latent.out_features)
                v_dim = self.motion.encode(z).shape[-1]
            self.heads["hcr"] = ProjectionHead(v_dim, head_hidden, head_dim)
        self.augment_kw = dict(augment or {})
        self._gen = torch.Generator().manual_seed(seed)
        self._turn = 0
        self.automatic_optimization = False

    def predict_pose(self, images: torch.Tensor) -> torch.Tensor:
        return self.prior.decode(self.encoder(images))

    # --- energies; raw clips (B, T_raw, C, H, W) ------------------------------------------
    def _view(self, images: torch.Tensor) -> torch.Tensor:
        return pose_invariant_augment(images, self._gen, **self.augment_kw)

    def _motion_code(self, clips: torch.Tensor) -> torch.Tensor:
        """clips (B, T, C, H, W) → v (B, D_v)."""
        return self.motion.encode(self.encoder.encode_frames(clips))

    def energy_lcr(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw[:, 0]
        feat_a, _ = self.encoder.features(x)
        feat_p, _ = self.encoder.features(self._view(x))
        head = self.heads["lcr"]
        return info_nce(head(feat_a), head(feat_p), self.hparams.temperature, self.hparams.contrastive_anchor)

    def energy_hcr(self, raw: torch.Tensor) -> torch.Tensor:
        clips = raw[:, : self.hparams.seq_len]
        head = self.heads["hcr"]
        v_a = head(self._motion_code(clips))
        v_p = head(self._motion_code(self._view(clips)))
        return info_nce(v_a, v_p, self.hparams.temperature, self.hparams.contrastive_anchor)

    def energy_flip(self, raw: torch.Tensor) -> torch.Tensor:
        frames = raw[:, : self.hparams.seq_len].flatten(0, 1)  # (B·T, C, H, W)
        z = self.encoder(frames)
        z_flip = self.encoder(flip_images(frames))
        return relation_energy(self.relations.pose_relation("flip")(z), z_flip, stop_grad_positive=False)

    def energy_flip_backward(self, raw: torch.Tensor) -> torch.Tensor:
        clips = raw[:, : self.hparams.seq_len]
        v = self._motion_code(clips)
        with torch.no_grad():
            v_pos = self._motion_code(flip_backward_clip(clips))
        return relation_energy(self.relations.motion_relation("flip_backward")(v), v_pos, stop_grad_positive=True)

    def energy_slow_backward(self, raw: torch.Tensor) -> torch.Tensor:
        anchor, positive = slow_backward_pair(raw, self.hparams.seq_len)
        v = self._motion_code(anchor)
        with torch.no_grad():
            v_pos = self._motion_code(positive)
        return relation_energy(self.relations.motion_relation("slow_backward")(v), v_pos, stop_grad_positive=True)

    def energy(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"energy_{name}")(raw)

    # --- optimisation ---------------------------------------------------------------------
    def energy_params(self, name: str) -> list[nn.Parameter]:
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        if name in self.heads:
            params += list(self.heads[name].parameters())
        return params

    def configure_optimizers(self):
        if not self.energies:
            return None
        return [torch.optim.Adam(self.energy_params(e), lr=self.lr[e]) for e in self.energies]

    def training_step(self, batch, batch_idx: int) -> None:
        if not self.energies:
            return None
        k = self._turn % len(self.energies)
        self._turn += 1
        name = self.energies[k]
        opts = self.optimizers()
        opt = opts[k] if isinstance(opts, list) else opts
        loss = self.energy(name, batch.images)
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.log(f"train/{name}", loss.detach(), on_step=True, on_epoch=False)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False)
        return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["round_robin_turn"] = self._turn

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._turn = int(checkpoint.get("round_robin_turn", 0))
