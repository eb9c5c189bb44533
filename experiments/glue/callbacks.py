"""Callbacks shared by all experiments."""
from __future__ import annotations

import math

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException


class DivergenceError(FloatingPointError):
    """A non-finite training loss; the message names the step and the offending loss terms."""


class DivergenceGuard(pl.Callback):
    """Stops training at the first NaN/inf loss, before the optimiser step corrupts the weights.

    The last checkpoint on disk is the last good one: nothing is saved after the failure.
    """

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        terms = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith("train/") and v.numel() == 1 and not math.isfinite(float(v))}
        named = ", ".join(f"{k}={v}" for k, v in terms.items()) or f"loss={float(loss)}"
        raise DivergenceError(
            f"non-finite loss at global step {trainer.global_step} (epoch {trainer.current_epoch}): {named}. "
            f"The last good checkpoint is kept in {getattr(trainer.checkpoint_callback, 'dirpath', None)}; "
            "lower the learning rate or check the data.")


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM (what SLURM sends before preemption) Lightning stops after the current batch;
    this writes last.ckpt there, so the requeued job resumes from the step it reached."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(str(self.path))
