"""Whether G's pose codes lie where stage E's frozen modules can read them, on the labelled target test clips.

T^z (stage C), E_m (stage B) and T^v (stage C) were trained on codes E_p(y) of real poses only, while G's
codes z = G(x) need only decode well, D_p(z) ≈ y: they may lie off the manifold of E_p's codes, where the
relation energies compare outputs of modules that never saw such inputs (the prior has no z-cycle; see
``stages/adapt.py``, audit item 5, and its ``project_codes``). Measured on two code sets of the first
``seq_len`` frames of up to ``n_clips`` test clips: "g", z = G(x), and "prior", z = E_p(y) of the true poses y:

- ``code_manifold/{g,prior}_projection_gap``: mean ‖E_p(D_p(z)) − z‖ (L2 per code), how far a code moves
  when projected onto the codes E_p emits; ``..._projection_gap_ratio``: that over the mean L2 distance
  between two distinct codes of the same set (the set's spread), so the sets compare at their own scale.
- ``code_manifold/{g,prior}_flip_relation_error_mm``: mean per-joint L2 (mm) of D_p(T^z_flip(z)) against
  flip_pose(D_p(z)): how well the pose-flip relation of eq. (2) acts on the set's codes (its error on
  "prior" is its training-set error; on "g", what G's codes get); only when the relations have "flip".
- ``code_manifold/pose_pa_mpjpe``: PA-MPJPE (mm) of D_p(G(X)) per frame against the true poses, and
  ``code_manifold/motion_ae_pose_pa_mpjpe``: of D_p(D_m(E_m(G(X)))) (clips of ``seq_len`` frames). A
  time-only motion relation (e.g. slow-backward) commutes with a per-frame G, so it can only teach G
  through E_m: the motion auto-encoder's round trip on G's codes bounds what such a relation can do as a
  motion prior; a round trip far worse than G itself means E_m drops what G's codes carry.

Both PA-MPJPEs use the module's ``eval_joints`` (as its test metrics). Writes ``code_manifold.md``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from posedistill import metrics as pose_metrics
from posedistill.skeleton import flip_pose

CODE_SETS = ("g", "prior")


def load_test_clips(datamodule, n_clips: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``seq_len`` frames of the first ``n_clips`` labelled test clips: images (n, T, C, H, W),
    poses (n, T, J, 3)."""
    if hasattr(datamodule, "setup"):
        datamodule.setup("test")
    images, poses, n = [], [], 0
    for clips in datamodule.test_dataloader():  # ClipBatch
        if clips.images.ndim != 5:
            raise ValueError(f"code_manifold needs test clips (B, T, C, H, W), got images {tuple(clips.images.shape)}")
        if clips.images.shape[1] < seq_len:
            raise ValueError(f"code_manifold needs test clips of at least seq_len={seq_len} frames, "
                             f"got {clips.images.shape[1]}")
        take = min(n_clips - n, len(clips.images))
        images.append(clips.images[:take, :seq_len])
        poses.append(clips.poses[:take, :seq_len])
        n += take
        if n >= n_clips:
            break
    if not n:
        raise ValueError("code_manifold: the datamodule's test_dataloader yielded no clips")
    return torch.cat(images), torch.cat(poses)


def projection_gap(prior, z: torch.Tensor) -> tuple[float, float]:
    """(mean ‖E_p(D_p(z)) − z‖, that / mean distance between distinct codes of ``z`` (N, D))."""
    gap = (prior.encode(prior.decode(z)) - z).double().norm(dim=-1).mean()
    n = len(z)
    if n < 2:
        return float(gap), float("nan")
    dist = torch.cdist(z.double(), z.double())
    spread = dist.sum() / (n * (n - 1))  # the diagonal is zero
    return float(gap), float(gap / spread)


def flip_relation_error(prior, flip, z: torch.Tensor, skeleton) -> float:
    """Mean per-joint L2 (mm) of D_p(T^z_flip(z)) against flip_pose(D_p(z))."""
    return float((prior.decode(flip(z)) - flip_pose(prior.decode(z), skeleton)).double().norm(dim=-1).mean())


def pa_mpjpe(pred: torch.Tensor, true: torch.Tensor, joints=None) -> float:
    """PA-MPJPE (mm) of poses (N, J, 3), on ``joints`` (None: all; alignment on those joints too)."""
    if joints is not None:
        pred, true = pred[:, joints], true[:, joints]
    metric = pose_metrics.PAMPJPE()
    metric.update(pred.cpu(), true.cpu())
    return float(metric.compute())


def _flip_relation(relations):
    try:
        return relations.pose_relation("flip")
    except KeyError:
        return None


def measure(module, images: torch.Tensor, poses: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """The numbers above for clips ``images`` (n, T, C, H, W) with true ``poses`` (n, T, J, 3); T must be
    the motion auto-encoder's sequence length. Runs without gradients; leaves the training mode alone."""
    device = getattr(module, "device", "cpu")
    prior, motion = module.prior, module.motion
    codes = {s: [] for s in CODE_SETS}
    pose_g, pose_m = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x, y = images[i : i + batch_size].to(device), poses[i : i + batch_size].to(device)
            z = module.encoder(x.flatten(0, 1))  # (b·T, D)
            z_seq = z.unflatten(0, x.shape[:2])
            z_round = motion.decode(motion.encode(z_seq))  # (b, T, D)
            codes["g"].append(z)
            codes["prior"].append(prior.encode(y.flatten(0, 1)))
            pose_g.append(prior.decode(z))
            pose_m.append(prior.decode(z_round.flatten(0, 1)))
        codes = {s: torch.cat(c) for s, c in codes.items()}
        out = {}
        for s, z in codes.items():
            out[f"code_manifold/{s}_projection_gap"], out[f"code_manifold/{s}_projection_gap_ratio"] = projection_gap(prior, z)
        flip = _flip_relation(module.relations)
        if flip is not None:
            for s, z in codes.items():
                out[f"code_manifold/{s}_flip_relation_error_mm"] = flip_relation_error(prior, flip, z, module.skeleton)
        true = poses.flatten(0, 1)
        joints = getattr(module, "eval_joints", None)
        out["code_manifold/pose_pa_mpjpe"] = pa_mpjpe(torch.cat(pose_g), true, joints)
        out["code_manifold/motion_ae_pose_pa_mpjpe"] = pa_mpjpe(torch.cat(pose_m), true, joints)
    return out


def write_table(numbers: dict[str, float], out_dir, n_clips: int, seq_len: int) -> Path:
    fmt = lambda key: f"{numbers[key]:.3f}" if key in numbers else "–"  # noqa: E731
    lines = ["| codes | projection gap ‖E_p(D_p(z)) − z‖ | gap / code spread | T^z_flip pose error (mm) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {fmt(f'code_manifold/{s}_projection_gap')} | {fmt(f'code_manifold/{s}_projection_gap_ratio')} "
              f"| {fmt(f'code_manifold/{s}_flip_relation_error_mm')} |"
              for s, name in (("g", "g: G(x)"), ("prior", "prior: E_p(y)"))]
    lines += ["", "| poses | PA-MPJPE (mm) |", "|---|---|",
              f"| D_p(G(X)) | {numbers['code_manifold/pose_pa_mpjpe']:.1f} |",
              f"| D_p(D_m(E_m(G(X)))) | {numbers['code_manifold/motion_ae_pose_pa_mpjpe']:.1f} |",
              "", f"The first {seq_len} frames of {n_clips} labelled target test clips; y: their true poses. "
              "Code spread: mean L2 distance between two distinct codes of the set. – : no flip pose relation."]
    path = Path(out_dir) / "code_manifold.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def analyze_code_manifold(module, datamodule, out_dir, n_clips: int = 40) -> dict[str, float]:
    """Framework analysis entry: measure on the datamodule's test clips (eval mode, no gradients), write
    ``code_manifold.md`` to ``out_dir``, restore the module's training mode."""
    was_training = module.training
    module.eval()
    try:
        seq_len = int(module.hparams.seq_len)
        images, poses = load_test_clips(datamodule, n_clips, seq_len)
        numbers = measure(module, images, poses)
    finally:
        module.train(was_training)
    write_table(numbers, out_dir, len(images), seq_len)
    return numbers
