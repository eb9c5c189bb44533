"""The autonomous noisy tanh rate RNN (the JEDI student) as a module.

Discrete Euler update, alpha = dt / tau (spec jedi.md §8a; ``jedi_rnn.dynamics.rate_rnn``):

    x_{t+1} = (1 - alpha) x_t + alpha (W r_t + b) + noise_t,    r_t = tanh(x_t)

W is either low rank, W = U V^T / N (never materialised), or a full per-trial matrix J, supplied per
trial by a hypernetwork. Training unrolls through ``jedi_rnn.dynamics.bptt`` (hand-written BPTT).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from jedi_rnn.dynamics.bptt import bptt_unroll
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, rate_step, unroll


class RateRNN(nn.Module):
    """Autonomous noisy tanh rate RNN whose weights are supplied per trial.

    Args:
        dt: integration step in seconds.
        tau: time constant in seconds (alpha = dt / tau).
        noise_std: process-noise std per step during training (0 in eval and analyses).
    """

    def __init__(self, dt: float = 0.01, tau: float = 0.05, noise_std: float = 0.01):
        super().__init__()
        if not 0 < dt <= tau:
            raise ValueError(f"model.rnn: need 0 < dt <= tau, got dt={dt}, tau={tau}")
        self.dt, self.tau, self.noise_std = dt, tau, noise_std

    @property
    def alpha(self) -> float:
        return self.dt / self.tau

    def forward(self, weights: RecurrentWeights, x0: Tensor, n_steps: int,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Unroll from x0 (B, N) for n_steps frames; returns rates (B, n_steps, N)."""
        B, N = x0.shape
        sigma = self.noise_std if self.training else 0.0
        if sigma > 0:
            noise = torch.randn(B, n_steps - 1, N, generator=generator, device=x0.device, dtype=x0.dtype) * sigma
        else:
            noise = x0.new_zeros(B, n_steps - 1, N)
        return bptt_unroll(weights, x0, noise, self.alpha)

    def rates(self, weights: RecurrentWeights, x0: Tensor, n_steps: int) -> Tensor:
        """Noise-free rates (B, K, n_steps, N) from x0 (B, K, N): K trials share each of the B weight
        sets (held-out candidates); plain autograd, for scoring without a gradient."""
        return unroll(weights, x0, self.alpha, n_steps - 1, rates=True)

    def step(self, weights: RecurrentWeights, x: Tensor) -> Tensor:
        """One noise-free step x_t -> x_{t+1} (B, N); differentiable by ordinary autograd."""
        return rate_step(x, weights, self.alpha)
