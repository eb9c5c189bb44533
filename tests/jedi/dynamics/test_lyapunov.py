"""Lyapunov spectrum by the QR method against closed forms and bounds."""
import numpy as np
import torch
from scipy.optimize import brentq

from jedi_rnn.dynamics.lyapunov import lyapunov_spectrum
from jedi_rnn.dynamics.maps import TanhRNNMap

DT = 0.01


def test_linear_map_exponents_equal_log_abs_eigenvalues():
    # A = P diag(...) P^-1 with a complex pair; x -> A x has exponents log|eig A| / dt
    rng = np.random.default_rng(0)
    rot = 0.7 * np.array([[np.cos(0.9), -np.sin(0.9)], [np.sin(0.9), np.cos(0.9)]])
    D = np.zeros((6, 6))
    D[:2, :2] = rot
    D[2:, 2:] = np.diag([1.05, -0.9, 0.4, 0.15])
    P = np.eye(6) + 0.3 * rng.normal(size=(6, 6))
    A = P @ D @ np.linalg.inv(P)
    At = torch.tensor(A)
    linear = lambda x: x @ At.T  # noqa: E731  (generic map: DF Q by forward-mode autodiff)
    res = lyapunov_spectrum(linear, torch.zeros(2, 6, dtype=torch.float64), DT, n_exponents=6,
                            burn_in=200, n_steps=2000)
    want = np.sort(np.log(np.abs(np.linalg.eigvals(A))))[::-1]
    for c in range(2):
        np.testing.assert_allclose(res.per_step[c].numpy(), want, atol=5e-3)
        np.testing.assert_allclose(res.exponents[c].numpy(), want / DT, atol=0.5)


def test_contracting_tanh_network_has_negative_exponents_below_the_norm_bound():
    # ||DF(x)||_2 <= (1 - a) + a ||W||_2 < 1 everywhere, so every exponent is below log of that / dt
    g = torch.Generator().manual_seed(1)
    C, N, R, alpha = 3, 30, 3, 0.2
    U = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    V = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    W = U @ V.transpose(1, 2) / N
    scale = 0.8 / torch.linalg.matrix_norm(W, ord=2)  # ||W||_2 = 0.8
    U = U * scale[:, None, None]
    F_low = TanhRNNMap(alpha, U=U, V=V)
    F_dense = TanhRNNMap(alpha, J=F_low.dense())
    x0 = 2.0 * torch.randn(C, N, generator=g, dtype=torch.float64)
    bound = np.log((1 - alpha) + alpha * 0.8) / DT
    low = lyapunov_spectrum(F_low, x0, DT, n_exponents=5, burn_in=100, n_steps=400)
    dense = lyapunov_spectrum(F_dense, x0, DT, n_exponents=5, burn_in=100, n_steps=400)
    assert (low.exponents < bound + 1e-9).all()
    torch.testing.assert_close(low.exponents, dense.exponents, atol=1e-8, rtol=0)


def test_exponents_at_a_stable_fixed_point_equal_log_local_derivatives():
    # diagonal network started exactly at a stable fixed point: exponents = log|F'_i(x*)| / dt
    w = np.array([1.5, 2.5, 0.5])
    xs = np.array([brentq(lambda x, wi=wi: x - wi * np.tanh(x), 1e-3, wi + 1) if wi > 1 else 0.0 for wi in w])
    alpha = 0.2
    F = TanhRNNMap(alpha, J=torch.diag(torch.tensor(w))[None])
    res = lyapunov_spectrum(F, torch.tensor(xs)[None], DT, n_exponents=3, burn_in=1500, n_steps=300)
    want = np.sort(np.log(np.abs((1 - alpha) + alpha * w * (1 - np.tanh(xs) ** 2))))[::-1] / DT
    np.testing.assert_allclose(res.exponents[0].numpy(), want, atol=1e-6)


def test_analytic_and_autodiff_tangent_maps_agree_and_batching_is_exact():
    g = torch.Generator().manual_seed(2)
    C, N, R = 3, 12, 2
    F = TanhRNNMap(0.25, U=2.0 * torch.randn(C, N, R, generator=g, dtype=torch.float64),
                   V=2.0 * torch.randn(C, N, R, generator=g, dtype=torch.float64))
    x0 = torch.randn(C, N, generator=g, dtype=torch.float64)
    kw = dict(n_exponents=4, burn_in=50, n_steps=200)
    analytic = lyapunov_spectrum(F, x0, DT, **kw)
    autodiff = lyapunov_spectrum(lambda x: F(x), x0, DT, **kw)
    torch.testing.assert_close(analytic.exponents, autodiff.exponents, atol=1e-9, rtol=0)
    for c in range(C):  # a context alone gives what it gives in the batch
        single = lyapunov_spectrum(F.subset(c), x0[c:c + 1], DT, **kw)
        torch.testing.assert_close(single.exponents[0], analytic.exponents[c], atol=1e-9, rtol=0)
    # the running estimate ends at the final exponents
    torch.testing.assert_close(analytic.running()[:, -1].sort(-1, descending=True).values, analytic.exponents)
