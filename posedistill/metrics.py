"""3D pose metrics as torchmetrics with sum-reducible states (exact under DDP).

Inputs: ``pred``, ``target`` (N, J, 3) in mm; optional ``action`` (N,) int class per pose and
``valid`` (N,) bool (e.g. MPI-INF-3DHP ``valid_frame``). A ``joints`` list restricts the
evaluated joints (e.g. the 14-joint 3DHP subset); the root used for alignment is ``root``.
Definitions follow spec framework.md §10.5–10.9.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from posedistill.skeleton import PAPER17, Skeleton, chain_bones, unit_bones

AUC_THRESHOLDS = tuple(float(t) for t in range(0, 151, 5))  # 31 values, 0..150 mm


def root_align(pose: torch.Tensor, root: int = 0) -> torch.Tensor:
    """Subtract the root joint: (N, J, 3) → (N, J, 3)."""
    return pose - pose[..., root : root + 1, :]


def procrustes_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Similarity-align each predicted pose to its target (float64 SVD, no reflections).

    With X = target, Y = pred (J×3): X₀ᵀY₀ = UΣVᵀ, R = V D Uᵀ, D = diag(1, 1, sign det(VUᵀ)),
    s = tr(ΣD)/‖Y₀‖², Ŷ = s·Y₀R + μ_X. Returns Ŷ (N, J, 3) in pred's dtype.
    """
    x = target.double()
    y = pred.double()
    mu_x, mu_y = x.mean(-2, keepdim=True), y.mean(-2, keepdim=True)
    x0, y0 = x - mu_x, y - mu_y
    u, sig, vh = torch.linalg.svd(x0.transpose(-1, -2) @ y0)  # (N,3,3), (N,3), (N,3,3)
    v = vh.transpose(-1, -2)
    sign = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    d = torch.ones_like(sig)
    d[..., -1] = sign
    r = v @ torch.diag_embed(d) @ u.transpose(-1, -2)
    s = (sig * d).sum(-1) / (y0**2).sum((-1, -2)).clamp_min(1e-12)
    aligned = s[..., None, None] * (y0 @ r) + mu_x
    return aligned.to(pred.dtype)


def scale_align(pred: torch.Tensor, target: torch.Tensor, root: int = 0) -> torch.Tensor:
    """N-MPJPE scaling: s = Σ⟨y, ŷ⟩ / Σ⟨ŷ, ŷ⟩ per pose on root-relative poses; returns s·ŷ."""
    p, t = root_align(pred, root), root_align(target, root)
    s = (p * t).sum((-1, -2)) / (p * p).sum((-1, -2)).clamp_min(1e-12)
    return s[..., None, None] * p


def rescale_to_gt_bones(pred: torch.Tensor, target: torch.Tensor, skeleton: Skeleton = PAPER17) -> torch.Tensor:
    """Keep the predicted bone directions, take the ground-truth bone lengths (the released
    code's evaluation); used for the ``*_gtbones`` metric variants."""
    lengths = (target[..., skeleton.children, :] - target[..., [p for p, _ in skeleton.bones], :]).norm(dim=-1)
    return chain_bones(unit_bones(pred, skeleton) * lengths[..., None], skeleton)


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (N, J, 3)")


class _PoseMetric(Metric):
    """Shared state handling: sums over evaluated (pose, joint) entries, pooled and per action."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, n_actions: int = 0, joints: Sequence[int] | None = None, root: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = int(n_actions)
        self.joints = None if joints is None else list(joints)
        self.root = root
        self._add_states()

    def _add_states(self) -> None:
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        n = max(self.n_actions, 1)
        self.add_state("action_total", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("action_count", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-joint errors (N, J) in mm."""
        raise NotImplementedError

    def _select(self, pred, target, action, valid):
        _check(pred, target)
        err = self.errors(pred, target)
        if self.joints is not None:
            err = err[:, self.joints]
        if valid is not None:
            valid = valid.bool()
            err = err[valid]
            action = None if action is None else action[valid]
        return err.double(), action

    def _accumulate(self, values: torch.Tensor, action: torch.Tensor | None) -> None:
        """values: (N, K) summed into the pooled state and per action."""
        self.total += values.sum()
        self.count += values.numel()
        if self.n_actions and action is not None:
            per_pose = values.sum(-1)
            self.action_total.index_add_(0, action.long(), per_pose)
            self.action_count.index_add_(0, action.long(), torch.full_like(per_pose, values.shape[-1]))

    def update(self, pred: torch.Tensor, target: torch.Tensor, action: torch.Tensor | None = None,
               valid: torch.Tensor | None = None) -> None:
        err, action = self._select(pred, target, action, valid)
        self._accumulate(err, action)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()

    def compute_per_action(self) -> torch.Tensor:
        """(n_actions,) mean per action; NaN for actions never seen."""
        return (self.action_total / self.action_count).float()

    def compute_action_mean(self) -> torch.Tensor:
        """Mean over the actions seen (the Human3.6M convention)."""
        per = self.compute_per_action()
        return per[~torch.isnan(per)].mean()


class MPJPE(_PoseMetric):
    """Protocol 1: mean root-aligned joint error (mm)."""

    def errors(self, pred, target):
        return (root_align(pred, self.root) - root_align(target, self.root)).norm(dim=-1)


class PAMPJPE(_PoseMetric):
    """Protocol 2: joint error after per-pose similarity (Procrustes) alignment."""

    def errors(self, pred, target):
        return (procrustes_align(pred.double(), target.double()) - target.double()).norm(dim=-1)


class NMPJPE(_PoseMetric):
    """Joint error after per-pose optimal scaling of the root-relative prediction."""

    def errors(self, pred, target):
        return (scale_align(pred.double(), target.double(), self.root) - root_align(target.double(), self.root)).norm(dim=-1)


class PCK3D(MPJPE):
    """100 · fraction of evaluated joints with root-aligned error strictly below ``threshold``."""

    higher_is_better = True

    def __init__(self, threshold: float = 150.0, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def update(self, pred, target, action=None, valid=None):
        err, action = self._select(pred, target, action, valid)
        self._accumulate((err < self.threshold).double(), action)

    def compute(self):
        return 100.0 * super().compute()

    def compute_per_action(self):
        return 100.0 * super().compute_per_action()


class AUC3D(MPJPE):
    """Plain mean of PCK@τ over τ ∈ {0, 5, …, 150} mm (31 values, strict <)."""

    higher_is_better = True

    def __init__(self, thresholds: Sequence[float] = AUC_THRESHOLDS, **kwargs):
        self.thresholds = tuple(float(t) for t in thresholds)
        super().__init__(**kwargs)

    def _add_states(self) -> None:
        k = len(self.thresholds)
        n = max(self.n_actions, 1)
        self.add_state("hits", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("action_hits", torch.zeros(n, k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("action_count", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred, target, action=None, valid=None):
        err, action = self._select(pred, target, action, valid)
        hit = (err[..., None] < torch.tensor(self.thresholds, dtype=err.dtype, device=err.device)).double()  # (N, K, T)
        self.hits += hit.sum((0, 1))
        self.count += err.numel()
        if self.n_actions and action is not None:
            self.action_hits.index_add_(0, action.long(), hit.sum(1))
            self.action_count.index_add_(0, action.long(), torch.full((len(err),), float(err.shape[1]),
                                                                       dtype=torch.float64, device=err.device))

    def compute_pck_curve(self) -> torch.Tensor:
        """(31,) PCK at each threshold."""
        return (100.0 * self.hits / self.count.clamp_min(1)).float()

    def compute(self):
        return self.compute_pck_curve().mean()

    def compute_per_action(self):
        return (100.0 * self.action_hits / self.action_count[:, None]).mean(-1).float()


def pose_spread(poses: torch.Tensor, root: int = 0) -> torch.Tensor:
    """RMS distance (mm) of root-aligned poses (N, J, 3) to their mean pose, per joint; needs no labels."""
    aligned = root_align(poses, root)
    return (aligned - aligned.mean(0)).square().sum(-1).mean().sqrt()


class PoseSpreadRatio(Metric):
    """Collapse indicator: RMS distance of the root-aligned predicted poses to their mean pose,
    divided by the same spread of the ground truth (1: as varied as the truth; → 0: every frame gets
    the same pose). The numerator needs no labels (:func:`pose_spread`). Sum-reducible: per joint,
    spread² = E‖p‖² − ‖E p‖², with the sums over poses kept for each of ``n_joints`` joints."""

    full_state_update = False
    higher_is_better = None

    def __init__(self, n_joints: int, root: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.n_joints, self.root = int(n_joints), root
        for name in ("pred", "target"):
            self.add_state(f"{name}_sum", torch.zeros(self.n_joints, 3, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{name}_sumsq", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        _check(pred, target)
        if pred.shape[1] != self.n_joints:
            raise ValueError(f"PoseSpreadRatio was built for {self.n_joints} joints, got poses {tuple(pred.shape)}")
        for name, poses in (("pred", pred), ("target", target)):
            aligned = root_align(poses.double(), self.root)  # (N, J, 3)
            getattr(self, f"{name}_sum").add_(aligned.sum(0))
            getattr(self, f"{name}_sumsq").add_(aligned.square().sum())
        self.count += len(pred)

    def spread(self, name: str) -> torch.Tensor:
        """RMS distance (mm) to the mean pose per joint of the ``name`` ("pred" / "target") poses."""
        n = self.count.clamp_min(1)
        mean = getattr(self, f"{name}_sum") / n  # (J, 3)
        var = getattr(self, f"{name}_sumsq") / n - (mean**2).sum()
        return (var.clamp_min(0) / self.n_joints).sqrt()

    def compute(self) -> torch.Tensor:
        return (self.spread("pred") / self.spread("target").clamp_min(1e-12)).float()
