"""Surrogate reach set (seeded, conditions, phases, Poisson statistics) and the phase segment transform."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jedi_rnn.data.reach_phases import SplitAtEvent
from jedi_rnn.data.surrogate_reach import SurrogateReach


@pytest.fixture(scope="module")
def surrogate():
    return SurrogateReach(n_neurons=12, n_heldout=3, trials_per_target=6, seed=3)()


def test_surrogate_is_seeded_and_labelled(surrogate):
    again = SurrogateReach(n_neurons=12, n_heldout=3, trials_per_target=6, seed=3)()
    other = SurrogateReach(n_neurons=12, n_heldout=3, trials_per_target=6, seed=4)()
    assert torch.equal(surrogate.data, again.data)
    assert not torch.equal(surrogate.data, other.data)
    assert surrogate.meta["label"] == "surrogate"
    assert all(name.startswith("surrogate_") for name in surrogate.condition_names)
    assert surrogate.condition_values.tolist() == [0, 45, 90, 135, 180, 225, 270, 315]
    assert torch.bincount(surrogate.conditions).tolist() == [6] * 8
    assert surrogate.data.shape == (48, 150, 12) and surrogate.meta["n_heldout"] == 3
    torch.testing.assert_close(surrogate.extras["heldout_spikes"], surrogate.data[..., -3:])


def test_surrogate_phases_follow_the_design(surrogate):
    z = surrogate.extras["latents"].double()
    theta = surrogate.extras["target_angle"].double()
    onset = int(surrogate.extras["move_onset_bin"][0])
    a = 1.5
    # end of preparation: the state sits at the target's preparatory state a (cos th, 0, sin th, 0)
    prep_goal = a * torch.stack([theta.cos(), 0 * theta, theta.sin(), 0 * theta], 1)
    assert (z[:, onset - 1] - prep_goal).norm(dim=1).max() < 0.15
    # before target onset the latent stays near 0
    first_on = int(surrogate.extras["target_on_bin"].min())
    assert z[:, :first_on].abs().max() < 0.1
    # execution: a quarter rotation (t = movement_s / 2) moves cos-plane mass to the sin-plane
    quarter = onset + 37
    expect = a * 0.998 ** 37 * torch.stack([theta.cos() * np.cos(np.pi * 37 / 75), theta.cos() * np.sin(np.pi * 37 / 75),
                                            theta.sin() * np.cos(np.pi * 37 / 75), theta.sin() * np.sin(np.pi * 37 / 75)], 1)
    # deviations: the residual of the preparation (< 0.15) carried along plus 37 steps of process noise
    # (per dim std 0.01 * sqrt(37) = 0.06, so a 4-d norm of about 0.12; max over 48 trials)
    assert (z[:, quarter] - expect).norm(dim=1).max() < 0.35
    # hand velocity points at the target during execution and is ~0 during preparation
    v = surrogate.extras["velocity"].double()
    speed_dir = v[:, quarter] / v[:, quarter].norm(dim=1, keepdim=True)
    torch.testing.assert_close(speed_dir, torch.stack([theta.cos(), theta.sin()], 1), atol=0.15, rtol=0)  # noise as above
    assert v[:, :onset].norm(dim=-1).max() < 0.35 * v[:, quarter].norm(dim=-1).min()


def test_surrogate_spikes_are_poisson_in_the_true_rates(surrogate):
    lam = surrogate.extras["true_rates"].double()
    y = surrogate.data.double()
    z = (y - lam) / lam.sqrt()  # standardised Poisson residuals: mean 0, variance 1
    n = z.numel()
    assert abs(float(z.mean())) < 4 / np.sqrt(n)
    assert float(z.var()) == pytest.approx(1.0, abs=0.05)
    assert torch.equal(y, y.round()) and float(y.min()) >= 0


def test_split_at_event_cuts_prep_and_exec_segments(surrogate):
    seg = SplitAtEvent(length=60)(surrogate)
    n = len(surrogate)
    onset = int(surrogate.extras["move_onset_bin"][0])
    assert seg.data.shape == (2 * n, 60, 12)
    torch.testing.assert_close(seg.data[:n], surrogate.data[:, onset - 60:onset])
    torch.testing.assert_close(seg.data[n:], surrogate.data[:, onset:onset + 60])
    torch.testing.assert_close(seg.extras["velocity"][n:], surrogate.extras["velocity"][:, onset:onset + 60])
    assert seg.extras["phase"].tolist() == [0] * n + [1] * n
    assert seg.condition_names[0] == "prep/surrogate_target_000deg"
    assert seg.condition_names[8 + 3] == "exec/surrogate_target_135deg"
    assert [seg.condition_names[c] for c in seg.conditions[n:n + 3]] == [
        "exec/" + surrogate.condition_names[c] for c in surrogate.conditions[:3]]
    psth = torch.as_tensor(surrogate.meta["psth"])
    torch.testing.assert_close(torch.as_tensor(seg.meta["psth"])[8 + 2], psth[2, onset:onset + 60])
    assert "forward_spikes" not in seg.extras  # not time-aligned with a segment
    assert SplitAtEvent()(surrogate).data.shape[1] == 75  # default: the longest length every trial allows
    with pytest.raises(ValueError, match="length"):
        SplitAtEvent(length=76)(surrogate)


def test_surrogate_teacher_eigenvalues_match_its_latent_updates():
    """Without noise the latent updates have the stored teacher eigenvalues in each phase."""
    ts = SurrogateReach(n_neurons=6, n_heldout=1, trials_per_target=2, latent_noise=0.0, seed=0)()
    z = ts.extras["latents"].double().numpy()
    onset, last_on = int(ts.extras["move_onset_bin"][0]), int(ts.extras["target_on_bin"].max())
    teacher = np.asarray(ts.meta["teacher_eigs"])
    # preparation, after every trial's target onset: z_{t+1} - goal = lambda (z_t - goal), so successive
    # differences shrink by the (4-fold) teacher eigenvalue
    d = np.diff(z[:, last_on:onset], axis=1)
    np.testing.assert_allclose(d[:, 1:], teacher[0][0].real * d[:, :-1], atol=1e-6)  # float32 extras
    assert np.abs(d).max() > 1e-3  # the test is not vacuous
    X, Y = z[:, onset:-1].reshape(-1, 4), z[:, onset + 1:].reshape(-1, 4)
    M = np.linalg.lstsq(X, Y, rcond=None)[0].T
    got = np.linalg.eigvals(M)
    for lam in teacher[1]:  # each teacher eigenvalue (two conjugate pairs) is matched, as a multiset
        i = np.argmin(np.abs(got - lam))
        assert abs(got[i] - lam) < 1e-5
        got = np.delete(got, i)
    assert np.abs(teacher[1]) == pytest.approx(0.998) and np.abs(teacher[0]) == pytest.approx(0.9)
