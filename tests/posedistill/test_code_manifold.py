"""The code-manifold analysis against values worked out independently: an oracle G whose codes are E_p's
gives the "prior" numbers, hand computations (codes, spreads, flips, Procrustes in numpy) on the tiny real
upstream stages, an identity motion auto-encoder leaves the pose error unchanged, and the analyze path."""
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from posedistill.analysis import code_manifold
from posedistill.stages.adapt import AdaptStage
from posedistill.stages.relations import RelationStage

from tests.posedistill.conftest import clip_batch

CONFIG = "configs/analysis/posedistill/code_manifold.yaml"
SEQ_LEN = 30  # the tiny motion auto-encoder's sequence length (MotionStage's default)


class _DataModule:
    """Stand-in datamodule: labelled test clips in the given batches; records ``setup`` calls."""

    def __init__(self, batches):
        self.batches, self.setups = batches, []

    def setup(self, stage=None):
        self.setups.append(stage)

    def test_dataloader(self):
        return iter(self.batches)


def _batches(pose_in_image: bool = False):
    """Two batches of 3 clips of 60 frames (32×32); ``pose_in_image``: each frame's true pose (51 numbers)
    is written into the first pixels of its channel 0, for the oracle encoder to read back."""
    out = []
    for seed in (0, 1):
        b = clip_batch(n_clips=3, n_frames=60, size=32, seed=seed)
        if pose_in_image:
            b.images.view(3, 60, 3, 32 * 32)[:, :, 0, :51] = b.poses.flatten(-2)
        out.append(b)
    return out


class _OracleEncoder(torch.nn.Module):
    """G(x) = E_p(y): reads the true pose out of the image; records the mode it was called in."""

    def __init__(self, prior):
        super().__init__()
        self.prior, self.calls = prior, []

    def batch_norms(self):  # AdaptStage.train keeps G's BatchNorm layers in eval mode
        return []

    def forward(self, images):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.prior.encode(images[:, 0].flatten(1)[:, :51].unflatten(-1, (17, 3)))


class _IdentityMotion(torch.nn.Module):
    """A motion 'auto-encoder' with D_m(E_m(z)) = z exactly (v is the flattened code sequence)."""

    def encode(self, z_seq):
        return z_seq.flatten(1)

    def decode(self, v):
        return v.unflatten(1, (SEQ_LEN, -1))


def _np_pa_mpjpe(pred: np.ndarray, true: np.ndarray) -> float:
    """Procrustes (rotation, scale, translation; Umeyama) per pose in numpy, then mean joint error."""
    errs = []
    for x, y in zip(pred.astype(np.float64), true.astype(np.float64)):
        x0, y0 = x - x.mean(0), y - y.mean(0)
        u, s, vt = np.linalg.svd(x0.T @ y0)
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
        rot = vt.T @ d @ u.T
        scale = np.trace(np.diag(s) @ d) / (x0 ** 2).sum()
        errs.append(np.linalg.norm(scale * x0 @ rot.T + y.mean(0) - y, axis=-1))
    return float(np.mean(errs))


def _hand_gap(prior, z: torch.Tensor) -> tuple[float, float]:
    z = z.double()
    gap = torch.sqrt(((prior.encode(prior.decode(z.float())).double() - z) ** 2).sum(-1)).mean()
    n = len(z)
    pair = torch.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))  # (n, n), explicit broadcast
    spread = pair[~torch.eye(n, dtype=torch.bool)].mean()
    return float(gap), float(gap / spread)


def _hand_flip_error(prior, relations, skeleton, z: torch.Tensor) -> float:
    perm = list(skeleton.flip_perm)
    dec = prior.decode(z)
    mirrored = dec[:, perm] * torch.tensor([-1.0, 1.0, 1.0])
    return float(torch.sqrt(((prior.decode(relations.pose_relation("flip")(z)) - mirrored) ** 2).sum(-1)).mean())


def test_projection_gap_closed_form():
    """A prior whose round trip clamps codes to [-1, 1]: z = (0,0), (3,4), (0,2) move by 0, √13, 1; the
    pairwise distances are 5, 2, √13."""

    class _ClampPrior:
        def decode(self, z):
            return z

        def encode(self, y):
            return y.clamp(-1, 1)

    gap, ratio = code_manifold.projection_gap(_ClampPrior(), torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 2.0]]))
    r13 = math.sqrt(13)
    assert gap == pytest.approx((1 + r13) / 3, rel=1e-9)
    assert ratio == pytest.approx((1 + r13) / (7 + r13), rel=1e-9)


def test_oracle_g_gives_the_prior_numbers(upstream, tmp_path):
    """G(x) = E_p(y) per frame: every "g" number equals its "prior" twin, G's pose error is the prior's own
    round-trip PA-MPJPE (numpy Procrustes), the analysis ran in eval mode without gradients and restored
    training mode."""
    module = AdaptStage(upstream, energies=[])
    oracle = module.encoder = _OracleEncoder(module.prior)
    module.train()
    dm = _DataModule(_batches(pose_in_image=True))
    numbers = code_manifold.analyze_code_manifold(module, dm, tmp_path, n_clips=4)
    for name in ("projection_gap", "projection_gap_ratio", "flip_relation_error_mm"):
        g, p = numbers[f"code_manifold/g_{name}"], numbers[f"code_manifold/prior_{name}"]
        assert g == pytest.approx(p, rel=1e-6), name
    assert numbers["code_manifold/g_projection_gap"] > 1e-3  # the untrained prior is no identity: a real check
    true = torch.cat([b.poses for b in dm.batches])[:4, :SEQ_LEN].flatten(0, 1)
    with torch.no_grad():
        round_trip = module.prior.decode(module.prior.encode(true))
    assert numbers["code_manifold/pose_pa_mpjpe"] == pytest.approx(_np_pa_mpjpe(round_trip.numpy(), true.numpy()), rel=1e-4)
    assert oracle.calls and all(c == (False, False) for c in oracle.calls)
    assert module.training and dm.setups == ["test"]


@pytest.mark.parametrize("eval_joints", [None, [0, 1, 2, 3, 4, 7, 8, 9, 10]])
def test_numbers_match_a_hand_computation(upstream, tmp_path, eval_joints):
    """Tiny real G, prior, motion AE and T^z_flip; n_clips=4 across batches of 3: the first 4 clips' first
    seq_len frames, codes, gaps, flip errors and both PA-MPJPEs (on ``eval_joints``) worked out by hand."""
    module = AdaptStage(upstream, energies=[], eval_joints=eval_joints)
    dm = _DataModule(_batches())
    numbers = code_manifold.analyze_code_manifold(module, dm, tmp_path, n_clips=4)

    images = torch.cat([b.images for b in dm.batches])[:4, :SEQ_LEN]
    poses = torch.cat([b.poses for b in dm.batches])[:4, :SEQ_LEN]
    module.eval()
    with torch.no_grad():
        z_g = module.encoder(images.flatten(0, 1))
        z_p = module.prior.encode(poses.flatten(0, 1))
        for name, z in (("g", z_g), ("prior", z_p)):
            gap, ratio = _hand_gap(module.prior, z)
            assert numbers[f"code_manifold/{name}_projection_gap"] == pytest.approx(gap, rel=1e-5)
            assert numbers[f"code_manifold/{name}_projection_gap_ratio"] == pytest.approx(ratio, rel=1e-5)
            flip_err = _hand_flip_error(module.prior, module.relations, module.skeleton, z)
            assert numbers[f"code_manifold/{name}_flip_relation_error_mm"] == pytest.approx(flip_err, rel=1e-5)
        z_round = module.motion.decode(module.motion.encode(z_g.unflatten(0, (4, SEQ_LEN)))).flatten(0, 1)
        pose_g, pose_m = module.prior.decode(z_g), module.prior.decode(z_round)
    joints = slice(None) if eval_joints is None else eval_joints
    true = poses.flatten(0, 1)[:, joints].numpy()
    assert numbers["code_manifold/pose_pa_mpjpe"] == pytest.approx(_np_pa_mpjpe(pose_g[:, joints].numpy(), true), rel=1e-4)
    assert numbers["code_manifold/motion_ae_pose_pa_mpjpe"] == pytest.approx(
        _np_pa_mpjpe(pose_m[:, joints].numpy(), true), rel=1e-4)
    # G's codes of noise images are not E_p's codes of the (random) poses: the two sets must differ
    assert numbers["code_manifold/g_projection_gap"] != pytest.approx(numbers["code_manifold/prior_projection_gap"], rel=1e-3)


def test_identity_motion_autoencoder_leaves_the_pose_error(upstream, tmp_path):
    """D_m(E_m(z)) = z: the motion-prior bound is G's own per-frame error; the real (untrained) motion AE
    is not an identity and changes it."""
    module = AdaptStage(upstream, energies=[])
    real = code_manifold.analyze_code_manifold(module, _DataModule(_batches()), tmp_path, n_clips=2)
    module.motion = _IdentityMotion()
    ident = code_manifold.analyze_code_manifold(module, _DataModule(_batches()), tmp_path, n_clips=2)
    assert ident["code_manifold/motion_ae_pose_pa_mpjpe"] == pytest.approx(ident["code_manifold/pose_pa_mpjpe"], rel=1e-9)
    assert ident["code_manifold/pose_pa_mpjpe"] == pytest.approx(real["code_manifold/pose_pa_mpjpe"], rel=1e-9)
    assert real["code_manifold/motion_ae_pose_pa_mpjpe"] != pytest.approx(real["code_manifold/pose_pa_mpjpe"], rel=1e-3)


def test_no_flip_relation_skips_the_flip_numbers(upstream, tmp_path):
    torch.manual_seed(0)
    relations = RelationStage(upstream={"prior": upstream["prior"], "motion": upstream["motion"]}, pose_relations=[],
                              motion_relations=["flip_backward"], pose_hidden=(16,), motion_hidden=(16,))
    module = AdaptStage({**upstream, "relations": relations}, energies=[])
    numbers = code_manifold.analyze_code_manifold(module, _DataModule(_batches()), tmp_path, n_clips=2)
    assert not any("flip" in k for k in numbers)
    assert len(numbers) == 6
    table = (tmp_path / "code_manifold.md").read_text()
    assert table.count("| – |") == 2  # both code rows have no flip error


def test_runs_through_the_analyze_path(upstream, tmp_path):
    """The config, instantiated and called as ``experiments.analyze`` does (``run_analyses``): numbers
    prefixed ``analysis/``, equal to a direct call, and the table in the run's figures dir."""
    from experiments.glue.run import run_analyses

    cfg = OmegaConf.load(CONFIG)
    assert cfg.code_manifold.n_clips == 40
    cfg.code_manifold.n_clips = 2
    module = AdaptStage(upstream, energies=[])
    results = run_analyses(cfg, module, _DataModule(_batches()), tmp_path, loggers=[])
    (tmp_path / "direct").mkdir()
    direct = code_manifold.analyze_code_manifold(module, _DataModule(_batches()), tmp_path / "direct", n_clips=2)
    assert results == {f"analysis/{k}": pytest.approx(v, rel=1e-9) for k, v in direct.items()}
    assert len(results) == 8
    table = (tmp_path / "figures" / "code_manifold.md").read_text()
    assert table.count("\n| g: G(x) |") == 1 and table.count("\n| prior: E_p(y) |") == 1
    assert f"| {direct['code_manifold/g_projection_gap']:.3f} |" in table
    assert f"| {direct['code_manifold/motion_ae_pose_pa_mpjpe']:.1f} |" in table
    assert "2 labelled target test clips" in table
