"""Context-input RNN baseline: one shared J, the auto-decoder embedding fed as a constant input W_c c."""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from jedi_rnn.baselines.optim import OptimizerFactory, SchedulerFactory, network_and_embedding_groups
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights
from jedi_rnn.lit_module import JediModule
from jedi_rnn.models.rnn import RateRNN


class ContextInputWeights(nn.Module):
    """A shared learned J (N, N) plus a constant input b(c) = W_c c (B, N), W_c (N, d) without bias.

    J goes through the student's shared base-matrix path with empty rank-0 low-rank factors (as in
    ``SharedWeights``)."""

    def __init__(self, embedding_dim: int, n_units: int, init_state: bool = False, gain: float = 1.0):
        super().__init__()
        if init_state:
            raise ValueError("the RNN baselines take x0 from the data: model.init_state must be 'data'")
        self.J = nn.Parameter(gain * torch.randn(n_units, n_units) / math.sqrt(n_units))
        self.input = nn.Linear(embedding_dim, n_units, bias=False)

    def forward(self, c: Tensor) -> RecurrentWeights:
        empty = self.J.new_zeros(c.shape[0], self.J.shape[0], 0)  # (B, N, 0): no low-rank part
        return RecurrentWeights(U=empty, V=empty, base=self.J, bias=self.input(c))


class ContextInputRNN(JediModule):
    """The student with one shared J whose context enters as a constant input (spec jedi.md §8i):
    x_{t+1} = (1 - a) x_t + a (J r_t + W_c c) + noise. It separates "context -> input" from JEDI's
    "context -> weights". Embeddings are an auto-decoder table trained jointly and inferred for held-out
    trials with everything else frozen, exactly as in JEDI.
    """

    def __init__(self, n_neurons: int, n_train_trials: int, n_conditions: int, n_steps: int, dt: float,
                 rnn: Callable[..., RateRNN], loss: Optional[nn.Module] = None, init_gain: float = 1.0,
                 embedding_dim: int = 8, embedding_tie: str = "trial", embedding_init_std: float = 0.1,
                 embedding_l2: float = 1e-4, lr: float = 1e-3, embedding_lr: float = 1e-2,
                 weight_decay: float = 0.0, noise_seed: int = 0, horizon: Optional[dict] = None,
                 optimizer: OptimizerFactory = torch.optim.AdamW, scheduler: Optional[SchedulerFactory] = None,
                 infer: Optional[dict] = None):
        super().__init__(n_neurons, n_train_trials, n_conditions, n_steps, dt,
                         hypernet=partial(ContextInputWeights, gain=init_gain), rnn=rnn, loss=loss,
                         embedding_dim=embedding_dim, embedding_tie=embedding_tie,
                         embedding_init_std=embedding_init_std, embedding_l2=embedding_l2, lr=lr,
                         embedding_lr=embedding_lr, weight_decay=weight_decay, noise_seed=noise_seed,
                         horizon=horizon, optimizer=optimizer, scheduler=scheduler, infer=infer)

    def parameter_groups(self) -> list[dict]:
        return network_and_embedding_groups(self, self.hparams.lr, self.hparams.embedding_lr,
                                            self.hparams.weight_decay)
