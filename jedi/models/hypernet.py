"""Hypernetworks: context embedding c -> recurrent weights J(c) of the student RNN (spec §8c)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jedi_rnn.dynamics.rate_rnn import RecurrentWeights

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def _mlp_trunk(embedding_dim: int, hidden_dim: int, activation: str) -> nn.Sequential:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"model.hypernet.activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    act = _ACTIVATIONS[activation]
    return nn.Sequential(nn.Linear(embedding_dim, hidden_dim), act(), nn.Linear(hidden_dim, hidden_dim), act())


class _Hypernet(nn.Module):
    """Shared parts: the 3-layer MLP (two hidden layers + output layer), the optional shared base
    matrix J_0, bias head and initial-state head."""

    def __init__(self, embedding_dim: int, n_units: int, out_dim: int, hidden_dim: int, activation: str,
                 base_matrix: bool, base_gain: float, bias: bool, init_state: bool):
        super().__init__()
        self.n_units = n_units
        self.trunk = _mlp_trunk(embedding_dim, hidden_dim, activation)
        self.head = nn.Linear(hidden_dim, out_dim)
        self.base = nn.Parameter(base_gain * torch.randn(n_units, n_units) / math.sqrt(n_units)) if base_matrix else None
        self.bias_head = nn.Linear(hidden_dim, n_units) if bias else None
        self.init_head = nn.Linear(hidden_dim, n_units) if init_state else None

    def _extras(self, h: Tensor) -> dict:
        return {
            "base": self.base,
            "bias": self.bias_head(h) if self.bias_head is not None else None,
        }

    def initial_state(self, c: Tensor) -> Tensor:
        """x_0 from the context (latent mode / init_state=context): (B, d) -> (B, N)."""
        if self.init_head is None:
            raise RuntimeError("this hypernetwork has no initial-state head (model.init_state=data)")
        return self.init_head(self.trunk(c))


class LowRankHypernet(_Hypernet):
    """3-layer MLP emitting the low-rank factors U(c), V(c) (B, N, R); J(c) = U V^T / N.

    The output layer starts with tiny weights and a bias drawn N(0, 1), so every context starts from
    the same random low-rank J and the contexts separate by gradient.
    """

    def __init__(self, embedding_dim: int, n_units: int, rank: int = 5, hidden_dim: int = 128,
                 activation: str = "gelu", base_matrix: bool = False, base_gain: float = 0.0,
                 bias: bool = False, init_state: bool = False, factor_gain: float = 1.0):
        if rank < 1:
            raise ValueError(f"model.rank must be >= 1, got {rank}")
        super().__init__(embedding_dim, n_units, 2 * n_units * rank, hidden_dim, activation,
                         base_matrix, base_gain, bias, init_state)
        self.rank = rank
        nn.init.normal_(self.head.weight, std=1e-3)
        with torch.no_grad():
            self.head.bias.normal_(0.0, factor_gain)

    def forward(self, c: Tensor) -> RecurrentWeights:
        h = self.trunk(c)
        out = self.head(h).view(c.shape[0], 2, self.n_units, self.rank)  # (B, 2*N*R) -> (B, 2, N, R)
        return RecurrentWeights(U=out[:, 0], V=out[:, 1], **self._extras(h))


class FullRankHypernet(_Hypernet):
    """3-layer MLP emitting a full recurrent matrix J(c) (B, N, N); the low-rank ablation."""

    def __init__(self, embedding_dim: int, n_units: int, hidden_dim: int = 128, activation: str = "gelu",
                 base_matrix: bool = False, base_gain: float = 0.0, bias: bool = False,
                 init_state: bool = False, init_gain: float = 1.0):
        super().__init__(embedding_dim, n_units, n_units * n_units, hidden_dim, activation,
                         base_matrix, base_gain, bias, init_state)
        nn.init.normal_(self.head.weight, std=1e-3)
        with torch.no_grad():
            self.head.bias.normal_(0.0, init_gain / math.sqrt(n_units))

    def forward(self, c: Tensor) -> RecurrentWeights:
        h = self.trunk(c)
        J = self.head(h).view(c.shape[0], self.n_units, self.n_units)  # (B, N*N) -> (B, N, N)
        return RecurrentWeights(J=J, **self._extras(h))
