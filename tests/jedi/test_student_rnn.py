"""The student RNN: hand-written BPTT equals autograd, and linearised dynamics oscillate at the
frequency predicted by the eigenvalues of J."""
import math

import numpy as np
import torch

from jedi_rnn.dynamics.bptt import _RateUnroll
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, unroll
from jedi_rnn.models.hypernet import FullRankHypernet, LowRankHypernet
from jedi_rnn.models.rnn import RateRNN


def _inputs(lowrank: bool, base: bool, bias: bool):
    g = torch.Generator().manual_seed(0)
    B, N, R, T = 3, 7, 2, 6
    kw = dict(dtype=torch.float64, generator=g)
    x0 = torch.randn(B, N, **kw).requires_grad_()
    U = torch.randn(B, N, R, **kw).requires_grad_() if lowrank else None
    V = torch.randn(B, N, R, **kw).requires_grad_() if lowrank else None
    J = None if lowrank else torch.randn(B, N, N, **kw).requires_grad_()
    J0 = torch.randn(N, N, **kw).requires_grad_() if base else None
    b = torch.randn(B, N, **kw).requires_grad_() if bias else None
    noise = torch.randn(B, T - 1, N, **kw).requires_grad_()
    return x0, U, V, J, J0, b, noise


def test_bptt_gradients_match_autograd_for_every_weight_form():
    for lowrank in (True, False):
        for base in (True, False):
            for bias in (True, False):
                args = _inputs(lowrank, base, bias)
                assert torch.autograd.gradcheck(lambda *a: _RateUnroll.apply(*a, 0.2), args)


def test_unroll_equals_plain_loop():
    x0, U, V, J, J0, b, noise = _inputs(True, True, True)
    w = RecurrentWeights(U=U, V=V, base=J0, bias=b)
    fast = _RateUnroll.apply(x0, U, V, None, J0, b, noise, 0.2)
    torch.testing.assert_close(fast, torch.tanh(unroll(w, x0, 0.2, noise.shape[1], noise=noise)))


def test_small_amplitude_oscillation_matches_eigenvalue_frequency():
    # Near the origin tanh(x) ~ x, so x_{t+1} = ((1 - a) I + a J) x: a rotation block J = [[s, -w], [w, s]]
    # gives an oscillation at Im(lambda_J) / (2 pi tau) Hz (spec jedi.md §8a).
    dt, tau, w = 0.001, 0.05, 2 * math.pi * 0.05 * 8.0  # 8 Hz
    J = torch.tensor([[1.0, -w], [w, 1.0]], dtype=torch.float64)[None]
    rnn = RateRNN(dt=dt, tau=tau, noise_std=0.0).eval()
    r = rnn(RecurrentWeights(J=J), torch.tensor([[1e-4, 0.0]], dtype=torch.float64), 4000)[0, :, 0].numpy()
    spectrum = np.abs(np.fft.rfft(r))
    freqs = np.fft.rfftfreq(len(r), dt)
    assert abs(freqs[spectrum.argmax()] - 8.0) <= 0.25


def test_lowrank_hypernet_shapes_and_shared_start():
    net = LowRankHypernet(embedding_dim=4, n_units=10, rank=3)
    w = net(torch.randn(5, 4))
    assert w.U.shape == w.V.shape == (5, 10, 3) and w.J is None
    # every context starts from (nearly) the same random low-rank J
    assert (w.U - w.U[:1]).abs().max() < 0.05
    dense = w.dense()
    # without a base matrix J(c) has rank <= R: its nonzero eigenvalues are those of V^T U / N
    eig_dense = torch.linalg.eigvals(dense[0].double())
    eig_small = torch.linalg.eigvals((w.V[0].T @ w.U[0] / 10).double())
    top = eig_dense[eig_dense.abs().argsort(descending=True)][:3]
    assert torch.allclose(top.abs().sort().values, eig_small.abs().sort().values, atol=1e-4)


def test_fullrank_hypernet_emits_square_matrix():
    w = FullRankHypernet(embedding_dim=4, n_units=6)(torch.randn(2, 4))
    assert w.J.shape == (2, 6, 6)
    r = torch.randn(2, 6)
    torch.testing.assert_close(w.apply(r), torch.einsum("bij,bj->bi", w.J, r))
