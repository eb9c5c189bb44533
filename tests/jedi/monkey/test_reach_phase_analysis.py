"""Prep / exec analysis (eigenvalues of A(c), Lyapunov exponents per phase) and the NLB analysis, on a
real JediModule."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from jedi_rnn.analysis.nlb_eval import analyze_nlb
from jedi_rnn.analysis.reach_phases import analyze_reach_phases, moving_eigenvalues, phase_summary
from jedi_rnn.data.reach_phases import SplitAtEvent
from jedi_rnn.data.surrogate_reach import SurrogateReach
from jedi_rnn.data.trials import TrialBatch, TrialDataModule
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights
from jedi_rnn.lit_module import JediModule
from jedi_rnn.losses import PoissonNLL
from jedi_rnn.models.hypernet import LowRankHypernet
from jedi_rnn.models.rnn import RateRNN
from tests.jedi.monkey.numpy_refs import bits_per_spike_numpy


def test_moving_eigenvalues_are_the_context_dependent_part_of_eig_A():
    g = torch.Generator().manual_seed(0)
    C, N, R, alpha = 3, 9, 2, 0.2
    w = RecurrentWeights(U=torch.randn(C, N, R, generator=g, dtype=torch.float64),
                         V=torch.randn(C, N, R, generator=g, dtype=torch.float64))
    eig = moving_eigenvalues(w, alpha).numpy()
    assert eig.shape == (C, R)
    for c in range(C):
        A = (1 - alpha) * np.eye(N) + alpha * w.dense()[c].double().numpy()
        full = np.linalg.eigvals(A)
        rest = sorted(full, key=lambda z: min(abs(z - e) for e in eig[c]))  # match the R moving ones first
        np.testing.assert_allclose(np.sort_complex(rest[:R]), np.sort_complex(eig[c]), atol=1e-9)
        np.testing.assert_allclose(rest[R:], 1 - alpha, atol=1e-9)  # the N - R fixed ones
    J = torch.randn(C, N, N, generator=g, dtype=torch.float64)
    dense = moving_eigenvalues(RecurrentWeights(J=J), alpha).numpy()
    for c in range(C):
        expect = np.linalg.eigvals((1 - alpha) * np.eye(N) + alpha * J[c].double().numpy())
        np.testing.assert_allclose(np.sort_complex(dense[c]), np.sort_complex(expect), atol=1e-9)


def test_phase_summary_hand_worked():
    eig = torch.tensor([[0.5 + 0j, 0.98 + 0.2j], [1.2 + 0j, 0.0 + 0.3j]], dtype=torch.complex128)
    out = phase_summary(eig, torch.tensor([-1.0, 3.0]), tol=0.05)
    r1 = abs(0.98 + 0.2j)  # 1.0002: within 0.05 of the unit circle
    assert out["radius_mean"] == pytest.approx((r1 + 1.2) / 2)
    assert out["modulus_mean"] == pytest.approx((0.5 + r1 + 1.2 + 0.3) / 4)
    assert out["frac_near_unit_circle"] == pytest.approx(0.25)
    assert out["frac_outside_unit_circle"] == pytest.approx(0.25)
    assert out["max_imag_mean"] == pytest.approx((0.2 + 0.3) / 2)
    assert out["lyap_max_mean"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def segments_dm():
    source = SurrogateReach(n_neurons=8, n_heldout=2, trials_per_target=7, seed=1)
    dm = TrialDataModule(source, batch_size=16, seed=0, transform=SplitAtEvent(length=40))
    dm.setup("fit")
    return dm


def _module(dm, hidden=16):
    return JediModule(**dm.dims, hypernet=partial(LowRankHypernet, rank=2, hidden_dim=hidden),
                      rnn=partial(RateRNN, tau=0.05), loss=PoissonNLL(), embedding_dim=3, latent_dim=6,
                      init_state="context")


def test_analysis_closed_form_for_zero_weights(segments_dm, tmp_path):
    """W(c) = 0 for every context: A = (1 - a) I, all Lyapunov exponents = ln(1 - a) / dt."""
    module = _module(segments_dm)
    with torch.no_grad():
        for p in module.hypernet.parameters():
            p.zero_()
    out = analyze_reach_phases(module, segments_dm, tmp_path / "figures", n_exponents=2, burn_in=5, n_steps=20)
    alpha, dt = 0.2, 0.01
    n_train = len(segments_dm.train_set)
    for phase in ("prep", "exec"):
        assert out[f"reach/{phase}_radius_mean"] == pytest.approx(1 - alpha)
        assert out[f"reach/{phase}_frac_near_unit_circle"] == 0.0
        assert out[f"reach/{phase}_lyap_max_mean"] == pytest.approx(math.log(1 - alpha) / dt, rel=1e-9)
    assert out["reach/n_contexts_prep"] + out["reach/n_contexts_exec"] == n_train
    assert (tmp_path / "figures" / "reach_phases.png").stat().st_size > 0


def test_analysis_matches_dense_eigenvalues_per_phase(segments_dm, tmp_path):
    module = _module(segments_dm)
    out = analyze_reach_phases(module, segments_dm, tmp_path / "figures", burn_in=5, n_steps=10, max_contexts=7)
    train = segments_dm.train_set
    alpha = module.rnn.alpha
    saved = np.load(tmp_path / "analysis" / "reach_phases.npz")
    for p, phase in enumerate(("prep", "exec")):
        rows = torch.as_tensor(saved[f"{phase}_train_rows"])
        assert len(rows) == 7 and bool((train.extras["phase"][rows] == p).all())
        with torch.no_grad():
            W = module.weights_for(module.embeddings.per_trial(train.conditions)[rows]).dense().double().numpy()
        radii = [np.abs(np.linalg.eigvals((1 - alpha) * np.eye(W.shape[1]) + alpha * w)).max() for w in W]
        assert out[f"reach/{phase}_radius_mean"] == pytest.approx(np.mean(radii), rel=1e-6)  # float32 weights
    assert out["reach/exec_minus_prep_radius"] == pytest.approx(out["reach/exec_radius_mean"] - out["reach/prep_radius_mean"])


def test_analysis_needs_phase_segments(tmp_path):
    dm = TrialDataModule(SurrogateReach(n_neurons=6, n_heldout=1, trials_per_target=7), batch_size=8)
    dm.setup("fit")
    with pytest.raises(ValueError, match="SplitAtEvent"):
        analyze_reach_phases(_module(dm), dm, tmp_path)


def test_nlb_analysis_scores_heldout_neurons_of_test_trials(tmp_path):
    dm = TrialDataModule(SurrogateReach(n_neurons=8, n_heldout=2, trials_per_target=7, seed=2), batch_size=64)
    dm.setup("fit")
    module = _module(dm)
    module.infer_cfg.update(split="neurons", heldout_neurons=0.25, steps=3)
    out = analyze_nlb(module, dm, tmp_path / "figures")
    assert set(out) == {"nlb/co_bps", "nlb/vel_r2", "nlb/psth_r2", "nlb/fp_bps"}
    # independent: infer the test embeddings from the held-in neurons, score the last 2 columns in numpy
    test = dm.test_set
    batch = TrialBatch(torch.arange(len(test)), test.conditions, test.data, dict(test.extras))
    module.eval()
    c = module.infer_embeddings(batch, 3)
    with torch.no_grad():
        rates = module.predict(c, batch).double().numpy()
    expect = bits_per_spike_numpy(test.data[..., -2:].double().numpy(), rates[..., -2:])
    assert out["nlb/co_bps"] == pytest.approx(expect, rel=1e-6)
    assert (tmp_path / "figures" / "nlb.png").exists()
    module.infer_cfg.update(heldout_neurons=0.5)
    with pytest.raises(ValueError, match="heldout_neurons"):
        analyze_nlb(module, dm, tmp_path)
