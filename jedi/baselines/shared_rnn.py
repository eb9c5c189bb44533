"""Shared RNN baseline: the JEDI student with one learned full-rank J for every trial, no context."""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from jedi_rnn.baselines.optim import OptimizerFactory, SchedulerFactory, network_and_embedding_groups
from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights
from jedi_rnn.lit_module import JediModule
from jedi_rnn.models.rnn import RateRNN


class SharedWeights(nn.Module):
    """One learned recurrent matrix J (N, N), initialised gain * N(0, 1/N), returned for any context.

    J goes through the student's shared base-matrix path (one (B, N) x (N, N) product per step for the
    whole batch, 5x faster than a batched per-trial J) with empty rank-0 low-rank factors.
    """

    def __init__(self, embedding_dim: int, n_units: int, init_state: bool = False, gain: float = 1.0):
        super().__init__()
        if init_state:
            raise ValueError("the RNN baselines take x0 from the data: model.init_state must be 'data'")
        self.J = nn.Parameter(gain * torch.randn(n_units, n_units) / math.sqrt(n_units))

    def forward(self, c: Tensor) -> RecurrentWeights:
        empty = self.J.new_zeros(c.shape[0], self.J.shape[0], 0)  # (B, N, 0): no low-rank part
        return RecurrentWeights(U=empty, V=empty, base=self.J)


class NoContext(nn.Module):
    """Stands in for the context table: every trial's context is empty, (B, 0)."""

    def forward(self, trial_index: Tensor, condition: Tensor) -> Tensor:
        return torch.zeros(len(trial_index), 0, device=trial_index.device)

    def per_trial(self, conditions: Tensor) -> Tensor:
        raise ValueError("the shared RNN has no context embedding to probe; drop analysis.probes for it")


class SharedRNN(JediModule):
    """The student rate RNN with a single learned J shared by all trials (spec jedi.md §8i).

    Training, held-out evaluation and metrics are JediModule's; a trial's context is empty, so held-out
    trials need no inference and the prediction depends on a trial only through its first frame
    (x_0 = atanh(y_0)).
    """

    def __init__(self, n_neurons: int, n_train_trials: int, n_conditions: int, n_steps: int, dt: float,
                 rnn: Callable[..., RateRNN], loss: Optional[nn.Module] = None, init_gain: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, noise_seed: int = 0, horizon: Optional[dict] = None,
                 optimizer: OptimizerFactory = torch.optim.AdamW, scheduler: Optional[SchedulerFactory] = None,
                 infer: Optional[dict] = None):
        super().__init__(n_neurons, n_train_trials, n_conditions, n_steps, dt,
                         hypernet=partial(SharedWeights, gain=init_gain), rnn=rnn, loss=loss, embedding_dim=1,
                         embedding_l2=0.0, lr=lr, weight_decay=weight_decay, noise_seed=noise_seed, horizon=horizon,
                         optimizer=optimizer, scheduler=scheduler, infer=infer)
        self.embeddings = NoContext()

    def parameter_groups(self) -> list[dict]:
        return network_and_embedding_groups(self, self.hparams.lr, self.hparams.lr, self.hparams.weight_decay)

    def infer_embeddings(self, batch: TrialBatch, steps: int) -> Tensor:
        """Nothing to infer: the empty context (B, 0)."""
        return batch.data.new_zeros(len(batch.index), 0)

    def train_embeddings(self) -> Tensor:
        raise ValueError("the shared RNN has no context embedding to probe; drop analysis.probes for it")
