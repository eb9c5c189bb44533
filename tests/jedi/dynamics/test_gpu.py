"""The finder and the Lyapunov spectrum on CUDA give what they give on the CPU."""
import pytest
import torch

from jedi_rnn.dynamics.fixed_points import FinderOptions, find_fixed_points
from jedi_rnn.dynamics.lyapunov import lyapunov_spectrum
from jedi_rnn.dynamics.maps import TanhRNNMap

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _problem():
    """Two block rank-2 networks with isolated fixed points (9 each); states near span(U)."""
    g = torch.Generator().manual_seed(0)
    C, K, N = 2, 96, 40
    signs = torch.randint(0, 2, (N,), generator=g).double() * 2 - 1
    U = torch.zeros(C, N, 2, dtype=torch.float64)
    for c, (g1, g2) in enumerate([(2.0, 2.5), (2.4, 1.9)]):
        U[c, : N // 2, 0], U[c, N // 2:, 1] = g1 * signs[: N // 2], g2 * signs[N // 2:]
    kappa = 4.0 * torch.rand(C, K, 2, generator=g, dtype=torch.float64) - 2.0
    x0 = kappa @ U.transpose(1, 2) + 0.1 * torch.randn(C, K, N, generator=g, dtype=torch.float64)
    return TanhRNNMap(0.2, U=U, V=U.clone()), x0


def compare_finder(device: str, fast_path: bool) -> None:
    F, x0 = _problem()
    opts = FinderOptions(dtype="float64", tol_q=1e-16)
    ref = find_fixed_points(F, x0, opts, fast_path=fast_path)
    dev = find_fixed_points(F.to(device=device), x0.to(device), opts, fast_path=fast_path)
    for a, b in zip(ref.contexts, dev.contexts):
        assert a.n == b.n == 9
        dist, match = torch.cdist(a.xstar, b.xstar.cpu()).min(1)  # the order may differ
        assert dist.max() < 1e-6
        assert torch.equal(a.stable, b.stable.cpu()[match])


def compare_lyapunov(device: str) -> None:
    F, x0 = _problem()
    ref = lyapunov_spectrum(F, x0[:, 0], 0.01, n_exponents=4, burn_in=100, n_steps=300)
    dev = lyapunov_spectrum(F.to(device=device), x0[:, 0].to(device), 0.01, n_exponents=4, burn_in=100, n_steps=300)
    torch.testing.assert_close(dev.exponents.cpu(), ref.exponents, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fast_path", [True, False])
def test_finder_on_cuda_equals_cpu(fast_path):
    compare_finder("cuda", fast_path)


def test_lyapunov_on_cuda_equals_cpu():
    compare_lyapunov("cuda")
