"""Eigenspectra helpers against numpy on the dense matrices."""
import numpy as np
import torch

from jedi_rnn.analysis.spectra import connectivity_eigenvalues, spectrum_summary, update_eigenvalues
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights


def _sorted(e):
    return e[np.argsort(-np.abs(e), kind="stable")]


def test_lowrank_shortcut_equals_dense_eigenvalues():
    g = torch.Generator().manual_seed(0)
    C, N, R = 3, 25, 4
    U = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    V = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    eig = connectivity_eigenvalues(RecurrentWeights(U=U, V=V)).numpy()
    for c in range(C):
        dense = _sorted(np.linalg.eigvals((U[c] @ V[c].T).numpy() / N))
        np.testing.assert_allclose(eig[c, :R], dense[:R], atol=1e-10)
        np.testing.assert_allclose(np.abs(dense[R:]), 0.0, atol=1e-10)
        assert (eig[c, R:] == 0).all()


def test_base_matrix_path_and_update_spectrum_equal_numpy():
    g = torch.Generator().manual_seed(1)
    C, N, R, alpha = 2, 10, 2, 0.2
    U = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    V = torch.randn(C, N, R, generator=g, dtype=torch.float64)
    base = torch.randn(N, N, generator=g, dtype=torch.float64) / np.sqrt(N)
    eig_J = connectivity_eigenvalues(RecurrentWeights(U=U, V=V, base=base))
    eig_A = update_eigenvalues(eig_J, alpha).numpy()
    for c in range(C):
        J = (U[c] @ V[c].T / N + base).numpy()
        np.testing.assert_allclose(eig_J[c].numpy(), _sorted(np.linalg.eigvals(J)), atol=1e-10)
        A = (1 - alpha) * np.eye(N) + alpha * J
        want = np.linalg.eigvals(A)
        np.testing.assert_allclose(np.sort_complex(eig_A[c]), np.sort_complex(want), atol=1e-10)


def test_spectrum_summary_numbers():
    eig = torch.tensor([[1.02 + 0j, 0.5 + 0.5j, 0.5 - 0.5j, -0.97 + 0j, 0.1 + 0j]], dtype=torch.complex128)
    s = spectrum_summary(eig, circle_tol=0.05)
    assert abs(float(s["radius"][0]) - 1.02) < 1e-12
    assert abs(float(s["max_imag"][0]) - 0.5) < 1e-12
    assert abs(float(s["near_unit_circle"][0]) - 2 / 5) < 1e-12  # 1.02 and -0.97
