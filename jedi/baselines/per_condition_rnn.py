"""Per-condition RNN baseline: an independent learned J for every condition label, no hypernetwork."""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jedi_rnn.baselines.optim import OptimizerFactory, SchedulerFactory, network_and_embedding_groups
from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights
from jedi_rnn.lit_module import JediModule
from jedi_rnn.models.rnn import RateRNN


class PerConditionWeights(nn.Module):
    """A stack of recurrent matrices J_k (C, N, N), each initialised gain * N(0, 1/N) independently.

    The context is a one-hot condition vector c (B, C); J(c) = sum_k c_k J_k picks the trial's matrix.
    """

    def __init__(self, embedding_dim: int, n_units: int, init_state: bool = False, gain: float = 1.0):
        super().__init__()
        if init_state:
            raise ValueError("the RNN baselines take x0 from the data: model.init_state must be 'data'")
        self.J = nn.Parameter(gain * torch.randn(embedding_dim, n_units, n_units) / math.sqrt(n_units))

    def forward(self, c: Tensor) -> RecurrentWeights:
        return RecurrentWeights(J=torch.einsum("bc,cnm->bnm", c, self.J))


class OneHotCondition(nn.Module):
    """Stands in for the context table: a trial's context is the one-hot code of its condition (B, C).

    ``tie = "condition"`` like a tied table: training trials of a condition share one code, so the
    embedding probe cross-validates on the codes chosen for held-out trials instead.
    """

    tie = "condition"

    def __init__(self, n_conditions: int):
        super().__init__()
        self.n_conditions = n_conditions

    def forward(self, trial_index: Tensor, condition: Tensor) -> Tensor:
        return F.one_hot(condition, self.n_conditions).float()

    def per_trial(self, conditions: Tensor) -> Tensor:
        return F.one_hot(conditions, self.n_conditions).float()


class PerConditionRNN(JediModule):
    """One independent student RNN (its own J) per condition label (spec jedi.md §8i).

    It cannot represent an unseen condition. A held-out trial, of a seen or an unseen condition, is
    run with the weights of the seen condition that fits its data best (lowest loss on the trial; no
    use of its label), so the held-out-condition R^2 is that of the nearest seen condition's network
    and the chosen condition doubles as a classification. ``inferred`` holds the chosen condition as
    a one-hot code, ``train_embeddings()`` the training trials' one-hot codes, so the embedding probe
    scores the choice (its cross-validated accuracy is, up to the probe, the fraction of held-out trials
    whose best-fitting network is their own condition's).
    """

    def __init__(self, n_neurons: int, n_train_trials: int, n_conditions: int, n_steps: int, dt: float,
                 rnn: Callable[..., RateRNN], loss: Optional[nn.Module] = None, init_gain: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, noise_seed: int = 0, horizon: Optional[dict] = None,
                 optimizer: OptimizerFactory = torch.optim.AdamW, scheduler: Optional[SchedulerFactory] = None,
                 infer: Optional[dict] = None):
        if (infer or {}).get("split", "none") != "none":
            raise ValueError("model.infer.split must be 'none' for the per-condition RNN (it picks a condition, "
                             "it fits no context)")
        super().__init__(n_neurons, n_train_trials, n_conditions, n_steps, dt,
                         hypernet=partial(PerConditionWeights, gain=init_gain), rnn=rnn, loss=loss,
                         embedding_dim=n_conditions, embedding_l2=0.0, lr=lr, weight_decay=weight_decay,
                         noise_seed=noise_seed, horizon=horizon, optimizer=optimizer, scheduler=scheduler,
                         infer=infer)
        self.embeddings = OneHotCondition(n_conditions)

    def _raw(self, c: Tensor, data: Tensor) -> Tensor:
        """Unlinked prediction (B, T, K), unrolled condition by condition: each condition's trials run with
        its J through the student's shared-matrix path (one GEMM per step and condition, several times
        faster than a batched per-trial J; equal to ``rnn(weights_for(c), ...)`` for one-hot c)."""
        k = c.argmax(1)
        if not torch.equal(c, F.one_hot(k, c.shape[1]).to(c.dtype)):
            raise ValueError("per-condition RNN: contexts must be one-hot condition codes")
        gen = None
        if self.training and self.rnn.noise_std > 0:
            gen = torch.Generator(device=data.device)
            gen.manual_seed(self.hparams.noise_seed * 1_000_003 + self.global_step)
        x0 = self.initial_state(c, data)
        parts, order = [], []
        for cond in torch.unique(k):
            sel = torch.nonzero(k == cond).flatten()
            empty = x0.new_zeros(len(sel), x0.shape[1], 0)  # (B_k, N, 0): no low-rank part
            weights = RecurrentWeights(U=empty, V=empty, base=self.hypernet.J[cond])
            parts.append(self.rnn(weights, x0[sel], data.shape[1], generator=gen))
            order.append(sel)
        rates = torch.cat(parts)[torch.argsort(torch.cat(order))]  # back to the batch's trial order
        return rates if self.readout is None else self.readout(rates)

    def parameter_groups(self) -> list[dict]:
        return network_and_embedding_groups(self, self.hparams.lr, self.hparams.lr, self.hparams.weight_decay)

    def candidate_embeddings(self) -> Tensor:
        """One-hot codes of the conditions seen in training (K, C)."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        seen = (torch.unique(dm.train_set.conditions) if dm is not None
                else torch.arange(self.embeddings.n_conditions)).to(self.device)
        return F.one_hot(seen, self.embeddings.n_conditions).float()

    def infer_embeddings(self, batch: TrialBatch, steps: int) -> Tensor:
        """The best-fitting seen condition of each trial as a one-hot code (B, C); no optimisation."""
        return super().infer_embeddings(batch, 0)
