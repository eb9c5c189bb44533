"""The tanh rate update shared by student, teachers and analyses: the weight forms act as their
dense matrices, the unroll follows the closed form of the leaky integrator, and batches of states
per trial run as independent trials."""
import pytest
import torch

from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, rate_step, unroll

B, N, R = 3, 6, 2


def _weights(form: str) -> tuple[RecurrentWeights, torch.Tensor]:
    """Weights of one form and their W (B, N, N) built here from the definitions."""
    g = torch.Generator().manual_seed(0)
    kw = dict(dtype=torch.float64, generator=g)
    U, V, J, base = torch.randn(B, N, R, **kw), torch.randn(B, N, R, **kw), torch.randn(B, N, N, **kw), torch.randn(N, N, **kw)
    lowrank = torch.einsum("bir,bjr->bij", U, V) / N
    return {"lowrank": (RecurrentWeights(U=U, V=V), lowrank),
            "lowrank+base": (RecurrentWeights(U=U, V=V, base=base), lowrank + base),
            "dense": (RecurrentWeights(J=J), J),
            "dense+base": (RecurrentWeights(J=J, base=base), J + base),
            "base": (RecurrentWeights(base=base), base.expand(B, N, N))}[form]


@pytest.mark.parametrize("form", ["lowrank", "lowrank+base", "dense", "dense+base", "base"])
def test_every_weight_form_acts_as_its_matrix(form):
    w, W = _weights(form)
    r = torch.randn(B, 4, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(w.apply(r), torch.einsum("bij,bkj->bki", W, r))
    torch.testing.assert_close(w.apply_T(r), torch.einsum("bji,bkj->bki", W, r))
    torch.testing.assert_close(w.apply(r[:, 0]), torch.einsum("bij,bj->bi", W, r[:, 0]))  # (B, N) rates
    assert w.n_units == N
    torch.testing.assert_close(torch.as_tensor(w.dense()).expand(B, N, N), W)


def test_without_recurrence_the_unroll_is_the_leaky_integrator_closed_form():
    # W = 0: x_t = (1 - a)^t x_0 + (1 - (1 - a)^t) (b + u) for a constant drive u
    a, T = 0.2, 30
    g = torch.Generator().manual_seed(2)
    x0, b, u = (torch.randn(B, N, dtype=torch.float64, generator=g) for _ in range(3))
    w = RecurrentWeights(base=torch.zeros(N, N, dtype=torch.float64), bias=b)
    states = unroll(w, x0, a, T, drive=u[:, None].expand(B, T, N))
    decay = (1 - a) ** torch.arange(T + 1, dtype=torch.float64)[None, :, None]
    torch.testing.assert_close(states, decay * x0[:, None] + (1 - decay) * (b + u)[:, None])


def test_unroll_adds_noise_after_each_step_and_returns_rates_on_request():
    w, W = _weights("lowrank")
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(B, N, dtype=torch.float64, generator=g), torch.randn(B, 5, N, dtype=torch.float64, generator=g)
    states = unroll(w, x0, 0.3, 5, noise=noise)
    x = x0
    for t in range(5):
        x = 0.7 * x + 0.3 * torch.einsum("bij,bj->bi", W, torch.tanh(x)) + noise[:, t]
        torch.testing.assert_close(states[:, t + 1], x)
    torch.testing.assert_close(unroll(w, x0, 0.3, 5, noise=noise, rates=True), torch.tanh(states))


def test_states_per_trial_run_as_independent_trials_sharing_the_trials_bias():
    w, _ = _weights("dense")
    w = w._replace(bias=torch.randn(B, N, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))
    x0 = torch.randn(B, 4, N, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    together = unroll(w, x0, 0.2, 7)  # (B, K, T + 1, N)
    for k in range(4):
        torch.testing.assert_close(together[:, k], unroll(w, x0[:, k], 0.2, 7))
    torch.testing.assert_close(rate_step(x0, w, 0.2), together[:, :, 1])
