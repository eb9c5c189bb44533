"""One optimiser for a model whose context table has row-sparse gradients (``model.sparse_embeddings``).

A per-trial table grows with the dataset; updated densely, every step touches every row (the Adam
update of a 90k-row table cost a JEDI step 1.4x at 100k trials, docs/results/jedi.md). With sparse
gradients the table gets gradients on its batch's rows only and ``torch.optim.SparseAdam`` (lazy
Adam: a row's moments move only when the row is in a batch) updates it, so a step costs the same at
1k and 100k trials. The network keeps the configured optimiser. Lightning's automatic optimisation,
gradient clipping, schedulers, LR monitor and checkpoints see one optimiser with all the groups.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer, SparseAdam


class TableOptimizer(Optimizer):
    """The network's optimiser and SparseAdam for the table, stepped as one optimiser.

    ``param_groups`` are the network's groups followed by the table's (the same dicts the two inner
    optimisers read, so a scheduler's rates reach them); ``state`` is shared by both.
    """

    def __init__(self, network: Optimizer, table: SparseAdam):
        self.network, self.table = network, table
        super().__init__(network.param_groups + table.param_groups, {})
        self._link()

    def _link(self) -> None:
        n = len(self.network.param_groups)
        self.network.param_groups, self.table.param_groups = self.param_groups[:n], self.param_groups[n:]
        self.network.state = self.table.state = self.state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._link()  # the base class replaced param_groups and state with the loaded ones

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.table.param_groups:  # one entry per row: the sparse update needs them coalesced
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = p.grad.coalesce()
        self.network.step()
        self.table.step()
        return loss


def build_optimizer(make_optimizer, groups: list[dict], sparse_table: bool) -> Optimizer:
    """``make_optimizer(groups)``; with ``sparse_table`` the last group (the context table, whose
    gradients are sparse) goes to SparseAdam at its own rate instead."""
    if not sparse_table:
        return make_optimizer(groups)
    *network, table = groups
    if table.get("weight_decay", 0.0):
        raise ValueError("model.sparse_embeddings: SparseAdam has no weight decay; the table's must be 0")
    table = {k: v for k, v in table.items() if k != "weight_decay"}  # the caller's group stays as it was
    return TableOptimizer(make_optimizer(network), SparseAdam([table]))


def clip_gradients(params, clip_val: float, algorithm: str = "norm") -> None:
    """Lightning's gradient clipping for gradients that may be sparse (the table's), which torch's
    ``clip_grad_norm_`` cannot take: by ``norm``, every gradient scaled by max_norm / (total norm + 1e-6)
    when that is below 1 (as torch's); by ``value``, every entry clamped to [-clip_val, clip_val]."""
    params = [p for p in params if p.grad is not None]
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    values = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]  # views of the gradients
    if algorithm == "value":
        for v in values:
            v.clamp_(-clip_val, clip_val)
        return
    total = torch.nn.utils.get_total_norm(values)
    coef = torch.clamp(clip_val / (total + 1e-6), max=1.0)
    for v in values:
        v.mul_(coef)


class SparseTableClipping:
    """LightningModule mixin: the trainer's gradient clipping, by :func:`clip_gradients` when the
    module's table has sparse gradients (``hparams.sparse_embeddings``), by Lightning's otherwise."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if not (self.hparams.sparse_embeddings and gradient_clip_val):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        clip_gradients(self.parameters(), gradient_clip_val, gradient_clip_algorithm or "norm")
