"""RNN-VAE baseline (the paper's): a sequential encoder gives a Gaussian initial condition of an
input-free recurrent generator, read out linearly (LFADS without controller; spec jedi.md §8i)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from jedi_rnn.baselines.encoder_base import EncoderBaseline
from jedi_rnn.baselines.optim import OptimizerFactory, SchedulerFactory


class RNNVAE(EncoderBaseline):
    """Bidirectional GRU encoder over the trial -> q(z0 | y) = N(mu, diag s^2) -> generator GRU started at
    h_0 = W_0 z0 with no inputs (a constant zero input) -> linear readout per bin. The posterior mean of
    z0 is the trial's embedding. ``n_train_trials``, ``n_conditions``, ``n_steps`` and ``dt`` are the
    datamodule's late sizes, taken like every JEDI model takes them and not needed here.
    """

    def __init__(self, n_neurons: int, n_train_trials: int, n_conditions: int, n_steps: int, dt: float,
                 loss: Optional[nn.Module] = None, embedding_dim: int = 8, encoder_dim: int = 64,
                 generator_dim: int = 64, kl_weight: float = 1.0, kl_warmup_epochs: int = 50, lr: float = 1e-3,
                 weight_decay: float = 0.0, noise_seed: int = 0, horizon: Optional[dict] = None,
                 optimizer: OptimizerFactory = torch.optim.AdamW, scheduler: Optional[SchedulerFactory] = None):
        super().__init__(n_neurons, loss, kl_weight, kl_warmup_epochs, horizon, noise_seed, optimizer, scheduler)
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"])
        self.encoder = nn.GRU(n_neurons, encoder_dim, batch_first=True, bidirectional=True)
        self.posterior = nn.Linear(2 * encoder_dim, 2 * embedding_dim)
        self.to_h0 = nn.Linear(embedding_dim, generator_dim)
        self.generator = nn.GRU(1, generator_dim, batch_first=True)
        self.readout = nn.Linear(generator_dim, n_neurons)

    def encode(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, h = self.encoder(data)  # h: (2, B, E), last state of each direction
        mu, logvar = self.posterior(torch.cat([h[0], h[1]], -1)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor, n_steps: int) -> Tensor:
        h0 = self.to_h0(z).unsqueeze(0)  # (1, B, G)
        states, _ = self.generator(z.new_zeros(len(z), n_steps, 1), h0)  # (B, T, G)
        return self.readout(states)
