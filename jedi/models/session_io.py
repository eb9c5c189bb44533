"""Per-session read-in and read-out around a shared latent RNN (as multi-session LFADS and NDT2): each
session's neurons map to and from the shared M latent units through that session's own linear layers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class SessionReadIn(nn.Module):
    """Session s's first frame y_0 (B, K_s) -> initial latent state x_0 (B, M); NaN entries count as 0."""

    def __init__(self, session_neurons: Sequence[int], latent_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(k, latent_dim) for k in session_neurons)

    def forward(self, session: int, first_frame: Tensor) -> Tensor:
        return self.layers[session](torch.nan_to_num(first_frame))


class SessionReadOut(nn.Module):
    """Latent rates r (B, T, M) -> session s's neurons (B, T, K_s)."""

    def __init__(self, session_neurons: Sequence[int], latent_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(latent_dim, k) for k in session_neurons)

    def forward(self, session: int, rates: Tensor) -> Tensor:
        return self.layers[session](rates)
