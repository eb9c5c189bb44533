"""The learning-rate schedule every model takes as its `scheduler` partial (configs: `model.scheduler`).

Models receive ``scheduler`` as a partial ``(optimizer, total_steps) -> LRScheduler`` and say what a
step is (JEDI and its baselines: an epoch; manual-optimisation stages: an optimiser step).
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class CosineDecayLR(LRScheduler):
    """Cosine decay of every parameter group's rate from its start to ``final_fraction`` of it over
    ``total_steps`` steps, constant after: lr_t = lr_0 (f + (1 - f) (1 + cos(pi min(t, T) / T)) / 2).

    The floor is per group (each group's own start rate times f), which torch's CosineAnnealingLR, with
    one absolute ``eta_min`` for all groups, cannot express for groups at different rates.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, final_fraction: float = 0.05, last_epoch: int = -1):
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"scheduler.final_fraction must be a number in [0, 1], got {final_fraction!r}")
        self.total_steps = max(1, int(total_steps))
        self.final_fraction = float(final_fraction)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """Multiplier of the start rates after ``step`` steps."""
        f, total = self.final_fraction, self.total_steps
        return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]
