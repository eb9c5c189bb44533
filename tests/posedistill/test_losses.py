"""InfoNCE vs an independent numpy computation; relation energies, clip transforms, DANN parts."""
import numpy as np
import pytest
import torch

from posedistill.losses.adversarial import domain_loss, grad_reverse
from posedistill.losses.distribution import random_directions, sliced_wasserstein
from posedistill.losses.contrastive import info_nce, pose_invariant_augment, random_appearance
from posedistill.losses.relations import flip_backward_clip, relation_energy, slow_backward_pair


def _numpy_info_nce(a: np.ndarray, p: np.ndarray, tau: float) -> np.ndarray:
    """Per-anchor −log(e^{s+/τ} / (e^{s+/τ} + Σ_{j≠i} e^{a_i·a_j/τ})), written with loops."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    out = []
    for i in range(len(a)):
        pos = np.exp(a[i] @ p[i] / tau)
        neg = sum(np.exp(a[i] @ a[j] / tau) for j in range(len(a)) if j != i)
        out.append(-np.log(pos / (pos + neg)))
    return np.array(out)


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(0)
    a, p = rng.normal(size=(8, 16)), rng.normal(size=(8, 16))
    ref = _numpy_info_nce(a, p, 0.07)
    at, pt = torch.tensor(a), torch.tensor(p)
    assert float(info_nce(at, pt, 0.07)) == pytest.approx(ref.mean(), rel=1e-9)
    assert float(info_nce(at, pt, 0.07, anchor="single")) == pytest.approx(ref[0], rel=1e-9)


def test_info_nce_minimal_when_positives_equal_anchors():
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.normal(size=(8, 16)))
    best = float(info_nce(a, a, 0.07))
    an = (a / a.norm(dim=1, keepdim=True)).numpy()
    closed = np.mean([np.logaddexp.reduce(an[i] @ an.T / 0.07) - 1 / 0.07 for i in range(8)])
    assert best == pytest.approx(closed, rel=1e-9)
    for k in range(20):
        noise = torch.tensor(np.random.default_rng(10 + k).normal(size=(8, 16))) * 0.3
        assert float(info_nce(a, a + noise, 0.07)) > best


def test_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="anchors"):
        info_nce(torch.zeros(4, 3), torch.zeros(4, 2))


def test_relation_energy_stop_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = torch.tensor([0.0, 0.0, 0.0], requires_grad=True)
    e = relation_energy(x, y, stop_grad_positive=True)
    assert float(e.detach()) == pytest.approx(2.0)  # mean |x − y|
    e.backward()
    assert y.grad is None
    torch.testing.assert_close(x.grad, torch.tensor([1.0, -1.0, 1.0]) / 3)
    relation_energy(x, y, stop_grad_positive=False).backward()
    torch.testing.assert_close(y.grad, -torch.tensor([1.0, -1.0, 1.0]) / 3)


def test_clip_transforms_index_frames():
    # frame t of clip b holds the value 100·b + t; width carries a ramp to check the flip
    b, t = 2, 60
    frame_id = (100 * torch.arange(b)[:, None] + torch.arange(t)[None]).float()
    ramp = torch.arange(4).float()
    clips = frame_id[:, :, None, None, None] + ramp.view(1, 1, 1, 1, 4) / 10  # (B, T, 1, 1, 4)
    anchor, positive = slow_backward_pair(clips, 30)
    assert anchor[..., 0].flatten(1).tolist() == [[100 * i + 2 * k for k in range(30)] for i in range(b)]
    assert positive[..., 0].flatten(1).tolist() == [[100 * i + 44 - k for k in range(30)] for i in range(b)]
    fb = flip_backward_clip(clips[:, :30])
    assert torch.equal(fb[:, 0], clips[:, 29].flip(-1))
    assert fb[0, 0, 0, 0].tolist() == pytest.approx([29.3, 29.2, 29.1, 29.0])
    with pytest.raises(ValueError, match="60 frames"):
        slow_backward_pair(clips[:, :45], 30)


def test_augment_is_colour_only_and_seeded():
    img = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out1 = pose_invariant_augment(img, g1, channel_gain=0.0, noise_std=0.0)
    out2 = pose_invariant_augment(img, g2, channel_gain=0.0, noise_std=0.0)
    assert torch.equal(out1, out2)
    ratio = out1 / img  # brightness only: one factor per image, in [0.5, 1.5], no pixel moves
    per_image = ratio.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image))
    assert ((per_image[:, 0] >= 0.5) & (per_image[:, 0] <= 1.5)).all()


def test_gradient_reversal_and_domain_loss():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, -1.0, -1.5]))
    assert float(domain_loss(torch.zeros(4), torch.zeros(5))) == pytest.approx(np.log(2))


def test_random_appearance_keeps_the_person_and_replaces_only_the_black_background():
    img = torch.zeros(2, 1, 16, 16)
    img[:, :, 4:12, 6:10] = torch.linspace(0.2, 0.8, 4)  # a grey person on black, shaded across its width
    out = random_appearance(img, torch.Generator().manual_seed(3))
    assert out.shape == (2, 3, 16, 16)
    person = out[:, :, 4:12, 6:10] / img[:, :, 4:12, 6:10]  # one colour gain per image and channel
    torch.testing.assert_close(person, person[..., :1, :1].expand_as(person))
    assert ((person >= 0.3 - 1e-6) & (person <= 1.0 + 1e-6)).all()
    other = torch.zeros_like(img)
    other[:, :, 0:3, 0:3] = 0.5  # another person elsewhere: the same draw gives the same background
    out2 = random_appearance(other, torch.Generator().manual_seed(3))
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[4:12, 6:10] = outside[0:3, 0:3] = False
    torch.testing.assert_close(out[..., outside], out2[..., outside])
    assert out[..., outside].std() > 0.01  # textured, not black


def test_augment_options_off_by_default_draw_nothing_and_stay_pose_invariant():
    img = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain = pose_invariant_augment(img, torch.Generator().manual_seed(7))
    off = pose_invariant_augment(img, torch.Generator().manual_seed(7), grayscale_p=0.0, channel_shuffle_p=0.0,
                                 blur=(0.0, 0.0), translate=0.0, scale=0.0)
    assert torch.equal(plain, off)  # the default view (and the generator's stream) is unchanged
    kw = dict(brightness=(1.0, 1.0), channel_gain=0.0, noise_std=0.0)
    grey = pose_invariant_augment(img, torch.Generator().manual_seed(0), grayscale_p=1.0, **kw)
    torch.testing.assert_close(grey, img.mean(-3, keepdim=True).expand_as(img))
    shuffled = pose_invariant_augment(img, torch.Generator().manual_seed(0), channel_shuffle_p=1.0, **kw)
    for b in range(2):
        for t in range(3):  # every output channel is one of the input channels
            assert all(any(torch.equal(shuffled[b, t, c], img[b, t, k]) for k in range(3)) for c in range(3))
    blurred = pose_invariant_augment(img, torch.Generator().manual_seed(0), blur=(1.0, 1.0), **kw)
    assert blurred.std() < img.std()
    torch.testing.assert_close(blurred.mean(), img.mean(), atol=0.02, rtol=0)


def test_crop_jitter_shifts_a_dot_within_the_range():
    img = torch.zeros(64, 1, 32, 32)
    img[:, :, 16, 16] = 1.0
    kw = dict(brightness=(1.0, 1.0), channel_gain=0.0, noise_std=0.0)
    out = pose_invariant_augment(img, torch.Generator().manual_seed(0), translate=0.1, **kw)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = out[:, 0].sum((-1, -2))
    cx = (out[:, 0] * xs).sum((-1, -2)) / mass
    cy = (out[:, 0] * ys).sum((-1, -2)) / mass
    shift = torch.stack([cx - 16, cy - 16], 1)
    assert shift.abs().max() <= 0.1 * 32 + 0.6  # ±10 % of the size (bilinear: half a pixel of slack)
    assert shift.abs().max() > 1.0  # it does move
    same = pose_invariant_augment(img, torch.Generator().manual_seed(0), translate=0.0, scale=0.0, **kw)
    assert torch.equal(same, img)


def test_sliced_wasserstein_closed_forms():
    """Along directions θ: a set against itself 0; against its translate by c, sqrt(mean (c·θ)²); one
    pose (the set's mean) for every frame against the set, sqrt(mean var(x·θ)) (the collapse it counters)."""
    g = torch.Generator().manual_seed(0)
    x = 50 * torch.randn(400, 17, 3, generator=g, dtype=torch.float64)
    c = 10 * torch.randn(17, 3, generator=g, dtype=torch.float64)
    theta = random_directions(51, 32, g).double()
    torch.testing.assert_close(theta.norm(dim=0), torch.ones(32, dtype=torch.float64))
    assert sliced_wasserstein(x, x, theta).item() == pytest.approx(0.0, abs=1e-9)
    shift = (c.flatten() @ theta).square().mean().sqrt()
    torch.testing.assert_close(sliced_wasserstein(x + c, x, theta), shift)
    collapsed = x.mean(0, keepdim=True).expand(100, -1, -1)
    spread = (x.flatten(1) @ theta).var(0, unbiased=False).mean().sqrt()
    torch.testing.assert_close(sliced_wasserstein(collapsed, x, theta), spread)
    with pytest.raises(ValueError, match="pose shapes differ"):
        sliced_wasserstein(x, x[:, :16], theta)
