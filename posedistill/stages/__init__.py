"""PoseDistill stages: one LightningModule per stage (A prior, B motion, C relations, D source, E adapt).

Stages that depend on earlier ones receive ``upstream={name: trained LightningModule}``; they
keep those modules frozen (eval mode, no gradients) with :func:`freeze` and :class:`UpstreamMixin`.
"""
from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and requires_grad False for every parameter; returns the module."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def require_upstream(upstream: Mapping[str, pl.LightningModule] | None, names: tuple[str, ...], owner: str) -> None:
    """Raise a clear error if a needed upstream stage is missing."""
    missing = [n for n in names if not upstream or n not in upstream]
    if missing:
        raise ValueError(f"{owner} needs upstream stages {list(names)}; missing {missing} "
                         f"(list them under `upstream:` in the model config)")


class UpstreamMixin:
    """Keeps the modules named in ``self._frozen`` in eval mode whenever ``train()`` is called."""

    _frozen: tuple[str, ...] = ()

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self._frozen:
            getattr(self, name).eval()
        return self
