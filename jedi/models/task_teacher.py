"""Task-trained teacher: a leaky tanh RNN trained on a cognitive task (spec jedi.md §8f).

The teacher is of the student's model class, driven by task inputs u_t:

    x_{t+1} = (1 - alpha) x_t + alpha (J tanh(x_t) + W_in u_t + b) + sigma * xi_t,   y_t = C tanh(x_{t+1}) + d

so its rates tanh(x) are what JEDI fits, and its fixed points under a constant input u are those of
``step(x, u)`` (the update of ``jedi_rnn.dynamics.rate_rnn`` with the drive W_in u + b).
"""
from __future__ import annotations

import math
from typing import Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, rate_step, unroll


class TaskTeacherModule(pl.LightningModule):
    """Leaky tanh RNN (N units, x_0 = 0) with a linear readout, trained with a masked MSE and Adam.

    Args:
        n_inputs, n_outputs: task sizes (from the task datamodule's ``dims``).
        n_units: N. alpha: dt / tau. noise_std: process noise per step while training.
        gain: J starts as gain * randn / sqrt(N). lr: Adam learning rate.
        stop_loss: stop training once ``val/loss`` falls below it (None: train for max_epochs).
        seed: seeds the initial weights and the process noise.
    """

    def __init__(self, n_inputs: int, n_outputs: int, n_units: int = 128, alpha: float = 0.2,
                 noise_std: float = 0.05, gain: float = 0.9, lr: float = 1e-3,
                 stop_loss: Optional[float] = None, seed: int = 0):
        super().__init__()
        if not 0 < alpha <= 1:
            raise ValueError(f"model.alpha must be in (0, 1], got {alpha}")
        if n_units < 1 or n_inputs < 1 or n_outputs < 1:
            raise ValueError(f"model.n_units, n_inputs, n_outputs must be >= 1, got {n_units}, {n_inputs}, {n_outputs}")
        self.save_hyperparameters()
        gen = torch.Generator().manual_seed(seed)
        self.J = nn.Parameter(gain * torch.randn(n_units, n_units, generator=gen) / math.sqrt(n_units))
        self.W_in = nn.Parameter(torch.randn(n_units, n_inputs, generator=gen) / math.sqrt(n_inputs))
        self.b = nn.Parameter(torch.zeros(n_units))
        self.readout = nn.Linear(n_units, n_outputs)
        with torch.no_grad():
            self.readout.weight.copy_(torch.randn(n_outputs, n_units, generator=gen) / math.sqrt(n_units))
            self.readout.bias.zero_()
        self._noise_gen: Optional[torch.Generator] = None

    @property
    def alpha(self) -> float:
        return self.hparams.alpha

    @property
    def weights(self) -> RecurrentWeights:
        """The recurrent matrix J, shared by every trial."""
        return RecurrentWeights(base=self.J)

    def step(self, x: Tensor, u: Tensor) -> Tensor:
        """One noise-free step; x (B, N), u (B, n_in) -> x_next (B, N)."""
        return rate_step(x, self.weights, self.alpha, drive=u @ self.W_in.T + self.b)

    def forward(self, inputs: Tensor, noise_std: Optional[float] = None, x0: Optional[Tensor] = None) -> Tensor:
        """Run on inputs (B, T, n_in); returns the states x_1..x_T (B, T, N), x_t after input u_{t-1}.

        ``noise_std`` defaults to the module's value in training mode and 0 in eval mode.
        """
        B, T, _ = inputs.shape
        sigma = (self.hparams.noise_std if self.training else 0.0) if noise_std is None else noise_std
        x = inputs.new_zeros(B, self.hparams.n_units) if x0 is None else x0
        drive_in = inputs @ self.W_in.T + self.b  # (B, T, N), computed once
        noise = None
        if sigma > 0:
            noise = sigma * torch.randn(B, T, x.shape[1], generator=self._generator(inputs.device),
                                        device=inputs.device, dtype=inputs.dtype)
        return unroll(self.weights, x, self.alpha, T, drive=drive_in, noise=noise)[:, 1:]

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._noise_gen is None or self._noise_gen.device != device:
            self._noise_gen = torch.Generator(device=device).manual_seed(self.hparams.seed + 1)
        return self._noise_gen

    def outputs(self, states: Tensor) -> Tensor:
        """Readout of the rates: states (B, T, N) -> outputs (B, T, n_out)."""
        return self.readout(torch.tanh(states))

    @staticmethod
    def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)

    def _loss(self, batch) -> Tensor:
        inputs, targets, mask = batch
        return self.masked_mse(self.outputs(self(inputs)), targets, mask)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, batch_size=batch[0].shape[0])

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test/loss", self._loss(batch), batch_size=batch[0].shape[0])

    def on_validation_epoch_end(self) -> None:
        stop = self.hparams.stop_loss
        val = self.trainer.callback_metrics.get("val/loss")
        if stop is not None and val is not None and float(val) < stop:
            self.trainer.should_stop = True

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
