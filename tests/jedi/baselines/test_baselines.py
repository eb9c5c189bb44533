"""JEDI baselines: each trains through the framework, and each one's defining property holds."""
from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import open_dict

from experiments.glue.run import run_task, train
from jedi_rnn.baselines.context_input_rnn import ContextInputRNN
from jedi_rnn.baselines.encoder_base import gaussian_kl
from jedi_rnn.baselines.per_condition_rnn import PerConditionRNN
from jedi_rnn.baselines.shared_rnn import SharedRNN
from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, unroll
from jedi_rnn.models.rnn import RateRNN

TINY = ["experiment=jedi/multifreq_demo", "data.source.trials_per_condition=5", "data.source.n_units=24",
        "data.source.duration_s=0.3", "data.source.warmup_s=0.2", "debug=fdr"]
# the VAEs have no auto-decoder: they take none of the inference settings the tiny size sets
NO_INFER = ["~model.infer"]
BASELINES = {"vae": NO_INFER, "rnn_vae": NO_INFER, "shared_rnn": [], "per_condition_rnn": [], "context_input_rnn": []}
PROBES = {"_target_": "jedi_rnn.analysis.probes.analyze_embedding_probes", "_partial_": True, "n_splits": 2}
GENERALISATION = {"_target_": "jedi_rnn.analysis.generalisation.analyze_generalisation", "_partial_": True}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_trains_one_step_through_the_framework(compose_cfg, name):
    cfg = compose_cfg([*TINY, "size=tiny", f"model=jedi/{name}", *BASELINES[name]])
    with open_dict(cfg):
        cfg.analysis = {"generalisation": GENERALISATION} | ({} if name == "shared_rnn" else {"probes": PROBES})
    metrics = run_task(train, cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "completed"
    for key in ("val/r2", "test/r2", "test/r2_heldout_cond", "test/r2_neuron_mean", "model/params_total",
                "analysis/generalisation/r2_heldout_cond"):
        assert math.isfinite(saved[key]), key
    assert saved["test/r2_heldout_cond"] == pytest.approx(metrics["test/r2_heldout_cond"])
    if name != "shared_rnn":  # NaN when a debug-sized split is too small to cross-validate
        acc = saved["analysis/probes/accuracy"]
        assert math.isnan(acc) or 0.0 <= acc <= 1.0


def _module(cls, n=6, n_conditions=3, **kw):
    torch.manual_seed(0)
    return cls(n_neurons=n, n_train_trials=4, n_conditions=n_conditions, n_steps=12, dt=0.01,
               rnn=partial(RateRNN, tau=0.05, noise_std=0.0), **kw).eval()


def _batch(data: torch.Tensor, conditions: list[int]) -> TrialBatch:
    return TrialBatch(torch.arange(len(data)), torch.tensor(conditions), data, {})


def test_shared_rnn_prediction_ignores_the_trial_context():
    model = _module(SharedRNN)
    gen = torch.Generator().manual_seed(1)
    data = 0.5 * torch.rand(2, 12, 6, generator=gen) - 0.25
    data[1, 0] = data[0, 0]  # same first frame, different trials, conditions and later data
    c = model.infer_embeddings(_batch(data, [0, 2]), steps=10)
    assert c.shape == (2, 0)
    pred = model.predict(c, _batch(data, [0, 2]))
    torch.testing.assert_close(pred[0], pred[1])
    # and it is the plain student run with the one shared J from x0 = atanh(y0)
    J = model.hypernet.J.detach()
    ref = torch.tanh(unroll(RecurrentWeights(J=J.expand(2, -1, -1)), torch.atanh(data[:, 0]), model.rnn.alpha, 11))
    torch.testing.assert_close(pred, ref)


def test_per_condition_rnn_uses_each_conditions_own_weights():
    model = _module(PerConditionRNN)
    onehot = F.one_hot(torch.arange(3), 3).float()
    W = model.weights_for(onehot).J
    for k in range(3):
        torch.testing.assert_close(W[k], model.hypernet.J[k])
    assert not torch.allclose(W[0], W[1])
    # a training step on trials of condition 1 moves J_1 only
    model.train()
    data = 0.5 * torch.rand(4, 12, 6, generator=torch.Generator().manual_seed(2)) - 0.25
    loss = model.training_step(_batch(data, [1, 1, 1, 1]), 0)
    loss.backward()
    grad = model.hypernet.J.grad
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_per_condition_rnn_grouped_unroll_equals_the_per_trial_weights():
    model = _module(PerConditionRNN)
    data = 0.5 * torch.rand(5, 12, 6, generator=torch.Generator().manual_seed(5)) - 0.25
    c = F.one_hot(torch.tensor([2, 0, 2, 1, 0]), 3).float()
    with torch.no_grad():
        grouped = model.predict(c, _batch(data, [2, 0, 2, 1, 0]))
    ref = torch.tanh(unroll(model.weights_for(c), torch.atanh(data[:, 0]), model.rnn.alpha, 11))
    torch.testing.assert_close(grouped, ref.detach())


def test_per_condition_rnn_picks_the_condition_whose_network_generated_the_trial():
    model = _module(PerConditionRNN, init_gain=3.0)
    x0 = torch.atanh(0.8 * torch.rand(3, 6, generator=torch.Generator().manual_seed(3)) - 0.4)
    truth = torch.tensor([2, 0, 1])
    with torch.no_grad():
        data = model.rnn(model.weights_for(F.one_hot(truth, 3).float()), x0, 12)
    # labels are wrong on purpose: the choice must come from the data alone
    c = model.infer_embeddings(_batch(data, [0, 0, 0]), steps=50)
    assert torch.equal(c.argmax(1), truth) and torch.equal(c.sum(1), torch.ones(3))


def test_context_input_rnn_context_enters_as_a_constant_input():
    model = _module(ContextInputRNN, embedding_dim=2)
    data = 0.5 * torch.rand(1, 12, 6, generator=torch.Generator().manual_seed(4)) - 0.25
    c = torch.tensor([[0.7, -1.2]])
    pred = model.predict(c, _batch(data, [0]))
    Wc = model.hypernet.input.weight.detach()  # (N, d)
    ref = torch.tanh(unroll(RecurrentWeights(J=model.hypernet.J.detach()[None], bias=c @ Wc.T),
                            torch.atanh(data[:, 0]), model.rnn.alpha, 11))
    torch.testing.assert_close(pred, ref)
    zero = model.predict(torch.zeros(1, 2), _batch(data, [0]))
    assert not torch.allclose(pred, zero)


def test_vae_kl_matches_the_closed_form_of_a_known_gaussian():
    # q = N([1, 0], diag[1, e]) against N(0, I): 0.5 (1 + 1 - 1 - 0) + 0.5 (0 + e - 1 - 1) = (e - 1) / 2
    mu = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert gaussian_kl(mu, logvar).item() == pytest.approx((math.e - 1) / 2, rel=1e-12)
    # and independent of the formula: a Monte-Carlo estimate of E_q[log q - log p] in numpy
    rng = np.random.default_rng(0)
    m, v = np.array([0.3, -0.5, 1.2]), np.array([0.4, 2.0, 0.9])
    z = m + np.sqrt(v) * rng.standard_normal((400_000, 3))
    log_q = -0.5 * (((z - m) ** 2) / v + np.log(2 * np.pi * v)).sum(1)
    log_p = -0.5 * (z ** 2 + np.log(2 * np.pi)).sum(1)
    kl = gaussian_kl(torch.tensor(m)[None], torch.tensor(np.log(v))[None]).item()
    assert kl == pytest.approx((log_q - log_p).mean(), abs=5e-3)
