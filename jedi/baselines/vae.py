"""VAE baseline (the paper's): MLP encoder of the flattened trial -> Gaussian latent -> MLP decoder of
the whole trajectory (spec jedi.md §8i)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from jedi_rnn.baselines.encoder_base import EncoderBaseline
from jedi_rnn.baselines.optim import OptimizerFactory, SchedulerFactory


def _mlp(n_in: int, hidden_dim: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                         nn.Linear(hidden_dim, n_out))


class VAE(EncoderBaseline):
    """Trial VAE: q(z | y) = N(mu(y), diag s^2(y)) from a 3-layer MLP on the flattened trial (T*K),
    p(y | z) decoded by a 3-layer MLP into the T x K trajectory. The posterior mean is the trial's
    embedding. The decoder emits exactly ``n_steps`` bins, so every trial must have that length.
    ``n_train_trials``, ``n_conditions`` and ``dt`` are the datamodule's late sizes, taken like every
    JEDI model takes them and not needed here.
    """

    def __init__(self, n_neurons: int, n_train_trials: int, n_conditions: int, n_steps: int, dt: float,
                 loss: Optional[nn.Module] = None, embedding_dim: int = 8, hidden_dim: int = 128,
                 kl_weight: float = 1.0, kl_warmup_epochs: int = 50, lr: float = 1e-3, weight_decay: float = 0.0,
                 noise_seed: int = 0, horizon: Optional[dict] = None, optimizer: OptimizerFactory = torch.optim.AdamW,
                 scheduler: Optional[SchedulerFactory] = None):
        super().__init__(n_neurons, loss, kl_weight, kl_warmup_epochs, horizon, noise_seed, optimizer, scheduler)
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"])
        self.n_steps, self.n_neurons = n_steps, n_neurons
        self.encoder = _mlp(n_steps * n_neurons, hidden_dim, 2 * embedding_dim)
        self.decoder = _mlp(embedding_dim, hidden_dim, n_steps * n_neurons)

    def encode(self, data: Tensor) -> tuple[Tensor, Tensor]:
        if data.shape[1:] != (self.n_steps, self.n_neurons):
            raise ValueError(f"VAE: trials must be ({self.n_steps}, {self.n_neurons}) (time, neurons), "
                             f"got {tuple(data.shape[1:])}")
        mu, logvar = self.encoder(data.flatten(1)).chunk(2, dim=-1)  # (B, T, K) -> (B, T*K) -> 2 x (B, d)
        return mu, logvar

    def decode(self, z: Tensor, n_steps: int) -> Tensor:
        out = self.decoder(z).view(len(z), self.n_steps, self.n_neurons)  # (B, T*K) -> (B, T, K)
        return out[:, :n_steps]
