"""Optimiser helpers shared by the baselines: the types of the ``optimizer`` / ``scheduler`` partials
every JEDI model takes, and the network / embedding parameter groups."""
from __future__ import annotations

from typing import Callable

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

# ``model.optimizer``: (parameter groups) -> Optimizer; ``model.scheduler``: (optimizer, total_steps) -> LRScheduler
OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., LRScheduler]


def network_and_embedding_groups(module: nn.Module, lr: float, embedding_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: every parameter outside ``module.embeddings`` at ``lr`` (with weight decay), the
    embedding table (if it has parameters) at ``embedding_lr``."""
    net = [p for n, p in module.named_parameters() if not n.startswith("embeddings.")]
    groups = [{"params": net, "lr": lr, "weight_decay": weight_decay}]
    table = list(module.embeddings.parameters()) if hasattr(module, "embeddings") else []
    if table:
        groups.append({"params": table, "lr": embedding_lr, "weight_decay": 0.0})
    return groups
