"""Fault injection used by the reliability tests (imported by runs through Hydra `_target_`s)."""
from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """Sends a signal to this process at the start of global step `step` (SIGKILL: no clean-up)."""

    def __init__(self, step: int, sig: str = "SIGKILL"):
        self.step, self.sig = step, getattr(signal, sig)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


class PoisonAtStep(pl.Callback):
    """Sets a weight to NaN at global step `step`, so the next loss is NaN (a divergence)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            next(pl_module.parameters()).data.fill_(float("nan"))
