"""Fixed-point finder: known fixed points, Jacobian spectra, batching, low-rank fast path, options."""
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from jedi_rnn.dynamics.fixed_points import FinderOptions, find_fixed_points, sample_initial_states, select_unique
from jedi_rnn.dynamics.maps import TanhRNNMap, map_jacobian, map_value_and_vjp

ALPHA = 0.2


def positive_root(w: float) -> float:
    """The positive solution of x = w tanh(x) (w > 1), independently by bracketing."""
    return brentq(lambda x: x - w * np.tanh(x), 1e-3, w + 1.0, xtol=1e-14)


def match(found: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """For each expected point, the distance to the nearest found point."""
    return np.linalg.norm(found[None, :, :] - expected[:, None, :], axis=-1).min(1)


def test_diagonal_network_finds_all_known_fixed_points_and_their_stability():
    # independent units: x_i = w_i tanh(x_i); fixed points = product of per-unit roots
    w = np.array([1.5, 2.5, 0.5])
    roots = [[0.0] + ([positive_root(wi), -positive_root(wi)] if wi > 1 else []) for wi in w]
    expected = np.array(list(itertools.product(*roots)))  # 3 x 3 x 1 = 9 points
    F = TanhRNNMap(ALPHA, J=torch.diag(torch.tensor(w))[None])
    g = torch.Generator().manual_seed(0)
    x0 = 2.0 * torch.randn(1, 256, 3, generator=g, dtype=torch.float64)
    res = find_fixed_points(F, x0, FinderOptions(tol_q=1e-16, dtype="float64"))
    fp = res.contexts[0]
    assert fp.n == len(expected)
    assert match(fp.xstar.numpy(), expected).max() < 1e-5
    # analytic per-unit derivative of the map at the root: (1 - a) + a w (1 - tanh^2 x)
    for x, eig, stable in zip(fp.xstar.numpy(), fp.eigenvalues.numpy(), fp.stable.numpy()):
        nearest = expected[np.argmin(np.linalg.norm(expected - x, axis=1))]
        deriv = (1 - ALPHA) + ALPHA * w * (1 - np.tanh(nearest) ** 2)
        np.testing.assert_allclose(eig.real, np.sort(np.abs(deriv))[::-1], atol=1e-6)
        np.testing.assert_allclose(eig.imag, 0.0, atol=1e-12)
        assert stable == bool(np.all(np.abs(deriv) < 1))
    assert fp.stable.sum() == 4  # (+-x_1.5) x (+-x_2.5) x 0


def block_rank2_map(N=40, g=(2.0, 2.5), base=False):
    """W = (m1 m1^T + m2 m2^T) / N with m1 = +-g1 on the first half, m2 = +-g2 on the second.
    Fixed points x = m1 k1 + m2 k2 with k_j = (g_j / 2) tanh(g_j k_j) (closed form per block)."""
    rng = np.random.default_rng(3)
    signs = rng.choice([-1.0, 1.0], size=N)
    U = np.zeros((N, 2))
    U[: N // 2, 0] = g[0] * signs[: N // 2]
    U[N // 2:, 1] = g[1] * signs[N // 2:]
    U = torch.tensor(U)[None]
    if base:  # same W, but given as a dense base matrix so the fast path cannot be used
        return TanhRNNMap(ALPHA, J=torch.zeros(1, N, N, dtype=torch.float64), base=(U[0] @ U[0].T) / N), U[0]
    return TanhRNNMap(ALPHA, U=U, V=U.clone()), U[0]


def block_rank2_expected(U, g=(2.0, 2.5)):
    kappas = [[0.0, k, -k] for k in (positive_root(gj * gj / 2) / gj for gj in g)]
    pts = np.array([U.numpy() @ np.array(kk) for kk in itertools.product(*kappas)])
    # nontrivial eigenvalues (1 - a) + a (g_j^2 / 2)(1 - tanh^2(g_j k_j)); the other N - 2 are 1 - a
    eigs = np.array([[(1 - ALPHA) + ALPHA * gj * gj / 2 * (1 - np.tanh(gj * kj) ** 2) for gj, kj in zip(g, kk)]
                     for kk in itertools.product(*kappas)])
    return pts, eigs


@pytest.mark.parametrize("fast_path", [True, False])
def test_rank2_network_known_fixed_points_fast_and_full(fast_path):
    F, U = block_rank2_map()
    expected, eigs = block_rank2_expected(U)
    g = torch.Generator().manual_seed(1)
    x0 = sample_initial_states(torch.tensor(expected)[None], 128, noise_std=0.5, generator=g)
    res = find_fixed_points(F, x0, FinderOptions(tol_q=1e-16, dtype="float64"), fast_path=fast_path)
    assert res.fast_path == fast_path
    fp = res.contexts[0]
    assert fp.n == 9
    assert match(fp.xstar.numpy(), expected).max() < 1e-5
    N = U.shape[0]
    for x, eig, stable in zip(fp.xstar.numpy(), fp.eigenvalues.numpy(), fp.stable.numpy()):
        i = np.argmin(np.linalg.norm(expected - x, axis=1))
        want = np.sort(np.concatenate([eigs[i], np.full(N - 2, 1 - ALPHA)]))[::-1]
        np.testing.assert_allclose(np.sort(eig.real)[::-1], want, atol=1e-6)
        assert stable == bool(np.all(eigs[i] < 1))


def test_fast_path_equals_full_space_finder():
    F, U = block_rank2_map()
    g = torch.Generator().manual_seed(2)
    # states near span(U) (as trajectories of the network are), random coordinates in it
    kappa = 4.0 * torch.rand(1, 128, 2, generator=g, dtype=torch.float64) - 2.0
    x0 = kappa @ U.T + 0.1 * torch.randn(1, 128, U.shape[0], generator=g, dtype=torch.float64)
    opts = FinderOptions(tol_q=1e-16, dtype="float64")
    fast = find_fixed_points(F, x0, opts, fast_path=True).contexts[0]
    full = find_fixed_points(F, x0, opts, fast_path=False).contexts[0]
    dense_base, _ = block_rank2_map(base=True)  # same dynamics through a base matrix: no fast path
    dense = find_fixed_points(dense_base, x0, opts).contexts[0]
    for other in (full, dense):
        assert other.n == fast.n
        assert match(other.xstar.numpy(), fast.xstar.numpy()).max() < 1e-5
        order = [int(np.argmin(np.linalg.norm(other.xstar.numpy() - x, axis=1))) for x in fast.xstar.numpy()]
        assert torch.equal(other.stable[order], fast.stable)
        np.testing.assert_allclose(other.eigenvalues[order].abs().numpy(), fast.eigenvalues.abs().numpy(), atol=1e-6)


def test_linear_map_jacobian_eigenvalues_equal_numpy():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6)) / np.sqrt(6) * 0.9
    At = torch.tensor(A)

    def linear(x):  # generic callable: Jacobians come from torch.func
        return x @ At.T

    x0 = torch.tensor(rng.normal(size=(1, 16, 6)))
    res = find_fixed_points(linear, x0, FinderOptions(dtype="float64"))
    fp = res.contexts[0]
    assert fp.n == 1 and fp.xstar.abs().max() < 1e-5  # the unique fixed point of x = A x is 0
    want = np.linalg.eigvals(A)
    want = want[np.argsort(-np.abs(want), kind="stable")]
    np.testing.assert_allclose(np.abs(fp.eigenvalues[0].numpy()), np.abs(want), atol=1e-10)
    got = fp.eigenvalues[0].numpy()
    assert match(np.stack([got.real, got.imag], 1), np.stack([want.real, want.imag], 1)).max() < 1e-10
    assert bool(fp.stable[0]) == bool(np.abs(want).max() < 1)


@pytest.mark.parametrize("kind", ["lowrank", "dense_base_bias"])
def test_analytic_derivatives_equal_autograd(kind):
    g = torch.Generator().manual_seed(4)
    C, K, N, R = 2, 3, 7, 2
    if kind == "lowrank":
        F = TanhRNNMap(0.3, U=torch.randn(C, N, R, generator=g, dtype=torch.float64),
                       V=torch.randn(C, N, R, generator=g, dtype=torch.float64))
    else:
        F = TanhRNNMap(0.3, J=torch.randn(C, N, N, generator=g, dtype=torch.float64),
                       base=torch.randn(N, N, generator=g, dtype=torch.float64),
                       bias=torch.randn(C, N, generator=g, dtype=torch.float64))
    x = torch.randn(C, K, N, generator=g, dtype=torch.float64)
    plain = lambda z: F(z)  # noqa: E731  (hides the analytic methods)
    cot = torch.randn(C, K, N, generator=g, dtype=torch.float64)
    fx, vjp = map_value_and_vjp(F, x)
    fx_ad, vjp_ad = map_value_and_vjp(plain, x)
    torch.testing.assert_close(fx, fx_ad)
    torch.testing.assert_close(vjp(cot), vjp_ad(cot))
    torch.testing.assert_close(map_jacobian(F, x), map_jacobian(plain, x))


@pytest.mark.parametrize("fast_path", [True, False])
def test_batched_over_contexts_equals_one_at_a_time(fast_path):
    g = torch.Generator().manual_seed(5)
    C, K, N, R = 3, 48, 20, 2
    U = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    F = TanhRNNMap(ALPHA, U=U, V=1.5 * U + 0.3 * torch.randn(C, N, R, generator=g, dtype=torch.float64))
    x0 = 2.0 * torch.randn(C, K, N, generator=g, dtype=torch.float64)
    opts = FinderOptions(dtype="float64", max_iters=3000)
    batched = find_fixed_points(F, x0, opts, fast_path=fast_path)
    for c in range(C):
        single = find_fixed_points(F.subset(c), x0[c:c + 1], opts, fast_path=fast_path)
        torch.testing.assert_close(single.x_final[0], batched.x_final[c], atol=1e-9, rtol=0)
        torch.testing.assert_close(single.n_iters[0], batched.n_iters[c])
        a, b = single.contexts[0], batched.contexts[c]
        assert a.n == b.n
        assert match(a.xstar.numpy(), b.xstar.numpy()).max() < 1e-9
    assert sum(c.n for c in batched.contexts) > C  # nontrivial networks (more than the origin)


def test_lr_decay_honours_factor_and_patience():
    # F(x) = x + 1 has no fixed point and zero gradient of q: the mean q never improves after the
    # first iteration, so the lr decays every (patience + 1) iterations.
    shift = lambda x: x + 1.0  # noqa: E731
    x0 = torch.zeros(2, 4, 3, dtype=torch.float64)
    max_iters, patience, factor = 20, 3, 0.5
    opts = FinderOptions(dtype="float64", tol_dq=0.0, max_iters=max_iters, lr_patience=patience, lr_factor=factor,
                         compute_jacobians=False, exclude_distance_outliers=False)
    res = find_fixed_points(shift, x0, opts)
    decays = (max_iters - 1) // (patience + 1)
    torch.testing.assert_close(res.lr_final, torch.full((2,), opts.lr_init * factor ** decays, dtype=torch.float64))
    assert int(res.n_iters.max()) == max_iters and not res.converged.any()


def test_stopping_rules_mask_converged_states():
    # scalar contraction x -> x / 2: q = x^2 / 8; with tol_dq = 0 only q < tol_q stops a state
    half = lambda x: 0.5 * x  # noqa: E731
    x0 = torch.tensor([[[1e-7], [1.0]]], dtype=torch.float64)  # first starts already converged
    res = find_fixed_points(half, x0, FinderOptions(dtype="float64", tol_q=1e-12, tol_dq=0.0, max_iters=4000))
    assert res.converged.all()
    assert res.n_iters[0, 0] == 0 and res.n_iters[0, 1] > 0
    assert res.x_final[0, 0, 0] == 1e-7  # masked: never moved
    assert (res.q_final < 1e-12).all()


def test_distance_outliers_are_excluded():
    # x -> x/2 + 50 has its only fixed point at 100, far outside the initial cloud around 0
    far = lambda x: 0.5 * x + 50.0  # noqa: E731
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(1, 32, 2, generator=g, dtype=torch.float64)
    opts = FinderOptions(dtype="float64", lr_init=1.0)
    assert find_fixed_points(far, x0, opts).contexts[0].n == 0
    kept = find_fixed_points(far, x0, FinderOptions(dtype="float64", lr_init=1.0, exclude_distance_outliers=False))
    torch.testing.assert_close(kept.contexts[0].xstar, torch.full((1, 2), 100.0, dtype=torch.float64), atol=1e-5, rtol=0)


def test_select_unique_keeps_lowest_q_per_cluster():
    x = torch.tensor([[[0.0], [5e-4], [1.0], [1.0 + 2e-4], [3.0]]], dtype=torch.float64)
    q = torch.tensor([[2.0, 1.0, 0.5, 0.7, 9.0]], dtype=torch.float64)
    keep = torch.tensor([[True, True, True, True, False]])
    assert select_unique(x, q, keep, tol_unique=1e-3).tolist() == [[False, True, True, False, False]]


def test_rerun_of_q_outliers_lowers_their_q_and_leaves_others():
    F = TanhRNNMap(ALPHA, J=torch.diag(torch.tensor([1.5, 2.5, 0.5], dtype=torch.float64))[None])
    g = torch.Generator().manual_seed(7)
    x0 = 2.0 * torch.randn(1, 64, 3, generator=g, dtype=torch.float64)
    base = FinderOptions(dtype="float64", max_iters=150, compute_jacobians=False)
    once = find_fixed_points(F, x0, base)
    again = find_fixed_points(F, x0, FinderOptions(**{**base.__dict__, "rerun_q_outliers": True}))
    outliers = once.q_final > base.outlier_q_scale * once.q_final.median(1, keepdim=True).values
    assert outliers.any()
    assert (again.q_final[outliers] < once.q_final[outliers]).all()
    torch.testing.assert_close(again.x_final[~outliers], once.x_final[~outliers])


def test_sample_initial_states_draws_trajectory_states_plus_noise():
    traj = torch.arange(2 * 5 * 3, dtype=torch.float64).reshape(2, 5, 3)
    exact = sample_initial_states(traj, 7, noise_std=0.0, generator=torch.Generator().manual_seed(0))
    assert exact.shape == (2, 7, 3)
    for c in range(2):  # every draw is one of that context's states
        assert match(traj[c].numpy(), exact[c].numpy()).max() == 0.0
    noisy = sample_initial_states(traj, 2000, noise_std=0.1, generator=torch.Generator().manual_seed(0))
    resid = noisy - torch.round(noisy)  # states are integers; the residual is the noise
    assert abs(float(resid.std()) - 0.1) < 0.01


def test_bad_input_raises_clear_errors():
    F = TanhRNNMap(ALPHA, J=torch.eye(3)[None])
    with pytest.raises(ValueError, match="x_init must be"):
        find_fixed_points(F, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="map has 1 contexts"):
        find_fixed_points(F, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="dtype"):
        FinderOptions(dtype="float16")
