"""Pose metrics against independent numpy computations and hand-worked cases."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from posedistill.metrics import AUC3D, MPJPE, NMPJPE, PAMPJPE, PCK3D


def numpy_pa_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """Independent orthogonal Procrustes per pose: minimise ‖s·y0 R − x0‖ with R = U D Vᵀ from svd(y0ᵀ x0)."""
    errs = []
    for y, x in zip(pred, target):
        x0, y0 = x - x.mean(0), y - y.mean(0)
        u, s, vt = np.linalg.svd(y0.T @ x0)  # maps y0 onto x0: R = U D Vᵀ
        d = np.sign(np.linalg.det(u @ vt))
        dm = np.diag([1.0, 1.0, d])
        r = u @ dm @ vt
        scale = np.trace(np.diag(s) @ dm) / (y0**2).sum()
        errs.append(np.linalg.norm(scale * y0 @ r + x.mean(0) - x, axis=-1))
    return float(np.mean(errs))


def _poses(n=6, seed=0):
    g = np.random.default_rng(seed)
    target = g.normal(0, 200, (n, 17, 3))
    pred = target + g.normal(0, 30, (n, 17, 3))
    return pred, target


def test_mpjpe_zero_on_identity_and_root_invariant():
    pred, target = _poses()
    m = MPJPE()
    m.update(torch.tensor(target), torch.tensor(target))
    assert m.compute().item() == 0.0
    m = MPJPE()
    shifted = target + np.array([5.0, -3.0, 100.0])  # a global translation leaves root-relative error 0
    m.update(torch.tensor(shifted), torch.tensor(target))
    assert m.compute().item() == pytest.approx(0.0, abs=1e-5)


def test_mpjpe_matches_numpy_and_per_action():
    pred, target = _poses()
    action = torch.tensor([0, 0, 1, 1, 1, 2])
    m = MPJPE(n_actions=3)
    m.update(torch.tensor(pred[:3]), torch.tensor(target[:3]), action[:3])  # streaming over 2 updates
    m.update(torch.tensor(pred[3:]), torch.tensor(target[3:]), action[3:])
    e = np.linalg.norm((pred - pred[:, :1]) - (target - target[:, :1]), axis=-1)  # (N, J)
    assert m.compute().item() == pytest.approx(e.mean(), rel=1e-6)
    per = [e[action.numpy() == a].mean() for a in range(3)]
    np.testing.assert_allclose(m.compute_per_action().numpy(), per, rtol=1e-6)
    assert m.compute_action_mean().item() == pytest.approx(np.mean(per), rel=1e-6)


def test_pa_mpjpe_equals_numpy_and_is_similarity_invariant():
    pred, target = _poses()
    m = PAMPJPE()
    m.update(torch.tensor(pred), torch.tensor(target))
    ref = numpy_pa_mpjpe(pred, target)
    assert m.compute().item() == pytest.approx(ref, rel=1e-5)
    rot = Rotation.random(random_state=3).as_matrix()
    moved = 2.7 * pred @ rot.T + np.array([100.0, -50.0, 3000.0])
    m2 = PAMPJPE()
    m2.update(torch.tensor(moved), torch.tensor(target))
    assert m2.compute().item() == pytest.approx(ref, rel=1e-5)


def test_pa_mpjpe_does_not_use_reflections():
    _, target = _poses(1)
    mirrored = target * np.array([-1.0, 1.0, 1.0])  # a reflection is not a similarity transform
    m = PAMPJPE()
    m.update(torch.tensor(mirrored), torch.tensor(target))
    assert m.compute().item() > 1.0
    assert m.compute().item() == pytest.approx(numpy_pa_mpjpe(mirrored, target), rel=1e-5)


def test_n_mpjpe_is_scale_invariant_and_closed_form():
    pred, target = _poses()
    m1, m2 = NMPJPE(), NMPJPE()
    m1.update(torch.tensor(pred), torch.tensor(target))
    m2.update(torch.tensor(3.0 * pred), torch.tensor(target))
    assert m1.compute().item() == pytest.approx(m2.compute().item(), rel=1e-6)
    p, t = pred - pred[:, :1], target - target[:, :1]
    s = (p * t).sum((1, 2)) / (p * p).sum((1, 2))
    assert m1.compute().item() == pytest.approx(np.linalg.norm(s[:, None, None] * p - t, axis=-1).mean(), rel=1e-6)


def test_pck_and_auc_hand_worked():
    # one pose, 4 joints (root + 3), errors 0, 100, 150, 200 mm along x
    target = torch.zeros(1, 4, 3)
    pred = torch.zeros(1, 4, 3)
    pred[0, 1, 0], pred[0, 2, 0], pred[0, 3, 0] = 100.0, 150.0, 200.0
    pck = PCK3D(threshold=150.0)
    pck.update(pred, target)
    assert pck.compute().item() == pytest.approx(50.0)  # strict <: 0 and 100 pass, 150 does not
    auc = AUC3D()
    auc.update(pred, target)
    # τ = 0: no joint (strict); τ = 5..100: 1 of 4; τ = 105..150: 2 of 4 → (0 + 20·25 + 10·50)/31
    assert auc.compute().item() == pytest.approx((20 * 25.0 + 10 * 50.0) / 31, rel=1e-6)


def test_pck_valid_mask_and_joint_subset():
    target = torch.zeros(2, 3, 3)
    pred = torch.zeros(2, 3, 3)
    pred[0, 1, 0] = 500.0  # frame 0 joint 1 wrong
    pred[1, 2, 0] = 500.0  # frame 1 joint 2 wrong (frame 1 invalid)
    pck = PCK3D(joints=[1, 2])
    pck.update(pred, target, valid=torch.tensor([True, False]))
    assert pck.compute().item() == pytest.approx(50.0)


def test_rescale_to_gt_bones_keeps_directions_and_takes_gt_lengths():
    from posedistill.metrics import rescale_to_gt_bones
    from posedistill.skeleton import bone_lengths, unit_bones

    _, target = _poses(3)
    target = torch.tensor(target - target[:, :1])
    pred = 0.7 * target + torch.tensor([1.0, 2.0, 3.0])  # same directions, wrong scale and offset
    torch.testing.assert_close(rescale_to_gt_bones(pred, target), target)
    other = torch.randn(3, 17, 3, dtype=torch.float64) * 100
    out = rescale_to_gt_bones(other, target)
    torch.testing.assert_close(bone_lengths(out), bone_lengths(target))
    torch.testing.assert_close(unit_bones(out), unit_bones(other))


def test_pose_spread_ratio_matches_numpy_and_flags_collapse():
    from posedistill.metrics import PoseSpreadRatio

    pred, target = _poses(10, seed=3)
    pred[:, 0] += 1000.0  # a root offset: spread is measured on root-aligned poses

    def rms_spread(p):  # independent: root-align, distance of every joint to its mean position
        p = p - p[:, :1]
        return np.sqrt((np.linalg.norm(p - p.mean(0), axis=-1) ** 2).mean())

    metric = PoseSpreadRatio(n_joints=17)
    for chunk in (slice(0, 4), slice(4, 10)):  # accumulated over batches = one pass over all poses
        metric.update(torch.tensor(pred[chunk]), torch.tensor(target[chunk]))
    assert metric.compute().item() == pytest.approx(rms_spread(pred) / rms_spread(target), rel=1e-6)
    assert metric.spread("target").item() == pytest.approx(rms_spread(target), rel=1e-9)

    collapsed = PoseSpreadRatio(n_joints=17)  # one pose for every frame (any root position): ratio 0
    same = np.repeat(target[:1], 10, axis=0) + np.random.default_rng(0).normal(0, 50, (10, 1, 3))
    collapsed.update(torch.tensor(same), torch.tensor(target))
    assert collapsed.compute().item() == pytest.approx(0.0, abs=1e-6)

    with pytest.raises(ValueError, match="17 joints"):
        collapsed.update(torch.zeros(2, 15, 3), torch.zeros(2, 15, 3))


def test_label_free_pose_spread_equals_the_metric_numerator():
    from posedistill.metrics import PoseSpreadRatio, pose_spread

    pred, target = _poses(7, seed=5)
    metric = PoseSpreadRatio(n_joints=17)
    metric.update(torch.tensor(pred), torch.tensor(target))
    assert pose_spread(torch.tensor(pred)).item() == pytest.approx(metric.spread("pred").item(), rel=1e-9)
