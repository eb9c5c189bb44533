"""Optimiser helpers shared by the baselines."""
from __future__ import annotations

import math

import torch
from torch import nn


def network_and_embedding_groups(module: nn.Module, lr: float, embedding_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: every parameter outside ``module.embeddings`` at ``lr`` (with weight decay), the
    embedding table (if it has parameters) at ``embedding_lr``."""
    net = [p for n, p in module.named_parameters() if not n.startswith("embeddings.")]
    groups = [{"params": net, "lr": lr, "weight_decay": weight_decay}]
    table = list(module.embeddings.parameters()) if hasattr(module, "embeddings") else []
    if table:
        groups.append({"params": table, "lr": embedding_lr, "weight_decay": 0.0})
    return groups


def with_schedule(optimizer: torch.optim.Optimizer, schedule: str, max_epochs: int, final_fraction: float):
    """Lightning's optimiser config: the optimiser alone (``none``) or with a per-epoch cosine decay of
    every rate to ``final_fraction`` of its start over ``max_epochs`` (``cosine``)."""
    if schedule == "none":
        return optimizer
    if schedule != "cosine":
        raise ValueError(f"model.lr_schedule must be none or cosine, got {schedule!r}")
    total = max(1, max_epochs)

    def factor(epoch: int) -> float:
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(epoch, total) / total))

    return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor)}
