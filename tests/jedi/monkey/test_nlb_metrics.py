"""NLB metrics against independent numpy computations of the published formulas (framework.md §10)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.metrics.nlb import PSTHR2, BitsPerSpike, NLBEvaluator, VelocityR2
from tests.jedi.monkey.numpy_refs import bits_per_spike_numpy as _bits_per_spike_numpy


def _spikes_and_rates(seed=0, n=12, T=30, K=7, nan_frac=0.1):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 0.3, size=(n, T, K))
    spikes = rng.poisson(rates * rng.uniform(0.5, 1.5, size=K)).astype(float)
    spikes[rng.random(spikes.shape) < nan_frac] = np.nan
    rates[0, 0, 0] = 0.0  # an exact zero rate (-> 1e-9)
    return spikes, rates


def test_co_bps_matches_numpy_with_nan_bins():
    spikes, rates = _spikes_and_rates()
    m = BitsPerSpike(spikes.shape[-1])
    m.update(torch.tensor(rates), torch.tensor(spikes))
    assert float(m.compute()) == pytest.approx(_bits_per_spike_numpy(spikes, rates), rel=1e-10)


def test_co_bps_streaming_over_batches_and_ranks_equals_one_shot():
    spikes, rates = _spikes_and_rates(seed=1)
    one = BitsPerSpike(spikes.shape[-1])
    one.update(torch.tensor(rates), torch.tensor(spikes))
    # three "ranks", each seeing uneven batches; their sum-reduced states are merged
    ranks = [BitsPerSpike(spikes.shape[-1]) for _ in range(3)]
    for i, (lo, hi) in enumerate([(0, 1), (1, 5), (5, 6), (6, 12)]):
        ranks[i % 3].update(torch.tensor(rates[lo:hi]), torch.tensor(spikes[lo:hi]))
    merged = BitsPerSpike(spikes.shape[-1])
    for name in ("model_term", "spike_sum", "bin_count"):
        setattr(merged, name, sum(getattr(r, name) for r in ranks))
    merged._update_count = 1
    assert float(merged.compute()) == pytest.approx(float(one.compute()), rel=1e-12)


def test_co_bps_of_null_model_is_zero_and_bad_rates_raise():
    spikes, _ = _spikes_and_rates(seed=2, nan_frac=0.0)
    null = np.broadcast_to(spikes.mean(axis=(0, 1)), spikes.shape).copy()
    m = BitsPerSpike(spikes.shape[-1])
    m.update(torch.tensor(null), torch.tensor(spikes))
    assert float(m.compute()) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=">= 0"):
        m.update(torch.tensor(-null), torch.tensor(spikes))


def _ridge_cv_numpy(Xtr, Ytr, alphas, k=5):
    """Independent ridge: augmented least squares with an unpenalised intercept column."""
    def fit(X, Y, a):
        Xa = np.hstack([X, np.ones((len(X), 1))])
        P = a * np.eye(Xa.shape[1])
        P[-1, -1] = 0.0
        return np.linalg.solve(Xa.T @ Xa + P, Xa.T @ Y)
    def pred(X, B):
        return np.hstack([X, np.ones((len(X), 1))]) @ B
    def r2(Y, Yh):
        return np.mean(1 - ((Y - Yh) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0))
    folds = np.array_split(np.arange(len(Xtr)), k)
    scores = [np.mean([r2(Ytr[f], pred(Xtr[f], fit(np.delete(Xtr, f, 0), np.delete(Ytr, f, 0), a))) for f in folds])
              for a in alphas]
    best = alphas[int(np.argmax(scores))]
    return best, fit(Xtr, Ytr, best), pred, r2


def test_velocity_r2_matches_numpy_ridge_cv():
    rng = np.random.default_rng(3)
    n_tr, n_ev, T, F = 9, 5, 20, 6
    W = rng.standard_normal((F, 2))
    rates = rng.gamma(2.0, 0.5, size=(n_tr + n_ev, T, F))
    vel = rates @ W + 0.8 * rng.standard_normal((n_tr + n_ev, T, 2))
    vel[1, 3, 0] = np.nan  # dropped row (train)
    vel[n_tr + 2, 7, 1] = np.nan  # dropped row (eval)
    m = VelocityR2()
    m.update(torch.tensor(rates[:4]), torch.tensor(vel[:4]), train=True)
    m.update(torch.tensor(rates[4:n_tr]), torch.tensor(vel[4:n_tr]), train=True)
    m.update(torch.tensor(rates[n_tr:]), torch.tensor(vel[n_tr:]), train=False)
    got = float(m.compute())

    def rows(x, y):
        x, y = x.reshape(-1, F), y.reshape(-1, 2)
        keep = ~np.isnan(y).any(1)
        return x[keep], y[keep]
    Xtr, Ytr = rows(rates[:n_tr], vel[:n_tr])
    Xev, Yev = rows(rates[n_tr:], vel[n_tr:])
    alphas = np.logspace(-4, 0, 9)
    best, B, pred, r2 = _ridge_cv_numpy(Xtr, Ytr, alphas)
    assert m.alpha_ == pytest.approx(best)
    assert got == pytest.approx(r2(Yev, pred(Xev, B)), rel=1e-9)


def test_velocity_r2_alpha_selection_matches_sklearn_gridsearch():
    sklearn = pytest.importorskip("sklearn.model_selection")
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(4)
    X = rng.standard_normal((53, 30))  # many features, few rows: the penalty matters
    Y = X[:, :2] @ rng.standard_normal((2, 2)) + 0.5 * rng.standard_normal((53, 2))
    gs = sklearn.GridSearchCV(Ridge(), {"alpha": np.logspace(-4, 0, 9)}).fit(X, Y)
    m = VelocityR2()
    m.update(torch.tensor(X), torch.tensor(Y), train=True)
    m.update(torch.tensor(X[:10]), torch.tensor(Y[:10]), train=False)
    got = float(m.compute())
    assert m.alpha_ == pytest.approx(gs.best_params_["alpha"])
    from sklearn.metrics import r2_score
    assert got == pytest.approx(r2_score(Y[:10], gs.best_estimator_.predict(X[:10])), rel=1e-8)


def test_psth_r2_matches_numpy_with_nan_and_unseen_conditions():
    rng = np.random.default_rng(5)
    C, T, K = 4, 15, 5
    psth = rng.gamma(2.0, 0.5, size=(C, T, K))
    psth[1, :3, 2] = np.nan
    cond = np.array([0, 1, 1, 2, 0, 2, 1])  # condition 3 never evaluated
    rates = psth[cond] + 0.3 * rng.standard_normal((len(cond), T, K))
    m = PSTHR2(torch.tensor(psth))
    m.update(torch.tensor(rates[:3]), torch.tensor(cond[:3]))
    m.update(torch.tensor(rates[3:]), torch.tensor(cond[3:]))
    seen = [0, 1, 2]
    P = psth[seen].reshape(-1, K)
    Ph = np.stack([rates[cond == c].mean(0) for c in seen]).reshape(-1, K)
    r2 = []
    for k in range(K):
        ok = ~np.isnan(P[:, k])
        p, q = P[ok, k], Ph[ok, k]
        r2.append(1 - ((p - q) ** 2).sum() / ((p - p.mean()) ** 2).sum())
    assert float(m.compute()) == pytest.approx(np.mean(r2), rel=1e-10)


def test_evaluator_routes_heldout_neurons_velocity_and_forward_bins():
    spikes, rates = _spikes_and_rates(seed=6, n=10, K=6, nan_frac=0.0)
    n_out, C = 2, 2
    cond = torch.tensor([0, 1] * 5)
    rng = np.random.default_rng(7)
    vel = rates @ rng.standard_normal((6, 2)) + 0.1 * rng.standard_normal((10, 30, 2))
    fwd = rng.poisson(1.0, size=(10, 4, 6)).astype(float)
    psth = torch.stack([torch.tensor(rates)[cond == c].mean(0) for c in range(C)])
    ev = NLBEvaluator(6, n_out, psth)

    def batch(sl):
        return TrialBatch(torch.arange(10)[sl], cond[sl], torch.tensor(spikes[sl]),
                          {"heldout_spikes": torch.tensor(spikes[sl][..., -n_out:]), "velocity": torch.tensor(vel[sl]),
                           "forward_spikes": torch.tensor(fwd[sl])})
    ev.update_train(torch.tensor(rates[:6]), batch(slice(0, 6)))
    ev.update(torch.tensor(rates[6:]), batch(slice(6, 10)))
    ev.update_forward(torch.ones(4, 4, 6), batch(slice(6, 10)))
    out = ev.compute()
    assert out["co_bps"] == pytest.approx(_bits_per_spike_numpy(spikes[6:, :, -n_out:], rates[6:, :, -n_out:]), rel=1e-10)
    assert out["fp_bps"] == pytest.approx(_bits_per_spike_numpy(fwd[6:], np.ones((4, 4, 6))), rel=1e-10)
    assert set(out) == {"co_bps", "vel_r2", "psth_r2", "fp_bps"} and out["vel_r2"] > 0.9
