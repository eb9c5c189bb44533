"""Auto-decoder context table: one learnable embedding per training trial (or per condition)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ContextTable(nn.Module):
    """Learnable context embeddings E (n_rows, d), initialised N(0, init_std^2).

    ``tie="trial"`` gives one row per training trial; ``tie="condition"`` one row per condition, and
    trials are mapped to their condition's row.
    """

    def __init__(self, n_trials: int, n_conditions: int, embedding_dim: int, tie: str = "trial",
                 init_std: float = 0.1):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        if tie not in ("trial", "condition"):
            raise ValueError(f"model.embedding.tie must be 'trial' or 'condition', got {tie!r}")
        self.tie = tie
        n_rows = n_trials if tie == "trial" else n_conditions
        self.table = nn.Embedding(n_rows, embedding_dim)
        nn.init.normal_(self.table.weight, std=init_std)

    @property
    def dim(self) -> int:
        return self.table.embedding_dim

    def forward(self, trial_index: Tensor, condition: Tensor) -> Tensor:
        return self.table(trial_index if self.tie == "trial" else condition)

    def per_trial(self, conditions: Tensor) -> Tensor:
        """Embeddings of all training trials (n_trials, d), given their condition labels."""
        if self.tie == "trial":
            return self.table.weight
        return self.table.weight[conditions]

    def mean(self) -> Tensor:
        return self.table.weight.mean(0)
