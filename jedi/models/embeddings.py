"""Auto-decoder context table: learnable embeddings of the training trials, one per trial, one per
condition, or a condition embedding plus a per-trial offset."""
from __future__ import annotations

from torch import Tensor, nn

TIES = ("trial", "condition", "hierarchical")


class ContextTable(nn.Module):
    """Learnable context embeddings of the training trials, initialised N(0, init_std^2).

    ``tie="trial"``: one row per training trial. ``tie="condition"``: one row per condition; trials
    use their condition's row. ``tie="hierarchical"``: the condition's row plus a per-trial offset
    that starts at zero, so what a condition's trials share is learned from all of them at once and
    each trial keeps its own differences (e.g. a frequency that varies within a task).
    ``sparse``: gradients on the batch's rows only, for SparseAdam (``jedi_rnn.optim``).
    """

    def __init__(self, n_trials: int, n_conditions: int, embedding_dim: int, tie: str = "trial",
                 init_std: float = 0.1, sparse: bool = False):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        if tie not in TIES:
            raise ValueError(f"model.embedding_tie must be one of {list(TIES)}, got {tie!r}")
        self.tie = tie
        self.table = nn.Embedding(n_trials if tie == "trial" else n_conditions, embedding_dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=init_std)
        self.offsets = None
        if tie == "hierarchical":
            self.offsets = nn.Embedding(n_trials, embedding_dim, sparse=sparse)
            nn.init.zeros_(self.offsets.weight)

    @property
    def dim(self) -> int:
        return self.table.embedding_dim

    def forward(self, trial_index: Tensor, condition: Tensor) -> Tensor:
        if self.tie == "trial":
            return self.table(trial_index)
        c = self.table(condition)
        return c if self.offsets is None else c + self.offsets(trial_index)

    def per_trial(self, conditions: Tensor) -> Tensor:
        """Embeddings of all training trials (n_trials, d), given their condition labels."""
        if self.tie == "trial":
            return self.table.weight
        c = self.table.weight[conditions]
        return c if self.offsets is None else c + self.offsets.weight
