"""Shared machinery of the amortised (encoder-decoder) baselines, VAE and RNN-VAE: the beta-weighted
ELBO with KL warm-up, and the same validation / test metrics and ``inferred`` embeddings as JediModule.

A held-out trial's embedding is its posterior mean from the encoder (amortised inference; no
optimisation), decoded without sampling.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from jedi_rnn.baselines.optim import OptimizerFactory, SchedulerFactory
from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.evaluation import HeldOutEvaluation
from jedi_rnn.losses import MaskedMSE


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row: 0.5 sum_j (mu_j^2 + s_j^2 - 1 - log s_j^2), (B,)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(-1)


class EncoderBaseline(HeldOutEvaluation):
    """Base of the VAE-style baselines. Subclasses build ``encoder``/``decoder`` parts and implement
    ``encode(data) -> (mu, logvar)`` with data (B, T, K) (NaN filled with 0) and
    ``decode(z, n_steps) -> raw (B, n_steps, K)`` (rates, or log-rates for a Poisson loss).

    The training loss per batch is ``recon + beta_t * mean_b KL_b / (H K)``: the KL per trial is spread
    over the trial's H x K scored entries, so with the MSE loss beta = 1 is the ELBO of a Gaussian
    likelihood of variance 1/2. beta_t ramps linearly from 0 to ``kl_weight`` over ``kl_warmup_epochs``.
    ``horizon`` ({start, ramp_epochs}) scores only the first H bins in training, H growing linearly to the
    whole trial (the curriculum of the JEDI experiments).
    """

    def __init__(self, n_neurons: int, loss: Optional[nn.Module], kl_weight: float, kl_warmup_epochs: int,
                 horizon: Optional[dict], noise_seed: int, optimizer: OptimizerFactory,
                 scheduler: Optional[SchedulerFactory]):
        super().__init__()
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        if kl_weight < 0 or kl_warmup_epochs < 0:
            raise ValueError(f"model.kl_weight and model.kl_warmup_epochs must be >= 0, got {kl_weight}, {kl_warmup_epochs}")
        self.loss_fn = loss if loss is not None else MaskedMSE()
        self._kl_weight, self._kl_warmup, self._horizon, self._noise_seed = kl_weight, kl_warmup_epochs, horizon, noise_seed
        self.init_evaluation(n_neurons)

    # -- model -------------------------------------------------------------------------------
    def encode(self, data: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def decode(self, z: Tensor, n_steps: int) -> Tensor:
        raise NotImplementedError

    def _link(self, raw: Tensor) -> Tensor:
        return torch.exp(raw) if getattr(self.loss_fn, "link", "identity") == "exp" else raw

    def predict(self, c: Tensor, batch: TrialBatch) -> Tensor:
        """Predicted observations (B, T, K) in data units from latents c (B, d)."""
        return self._link(self.decode(c, batch.data.shape[1]))

    def posterior_mean(self, data: Tensor) -> Tensor:
        """The embedding of trials (B, T, K): their posterior mean (B, d)."""
        return self.encode(torch.nan_to_num(data))[0]

    def train_embeddings(self) -> Tensor:
        """Posterior means of the training trials (n_train, d), in the training set's order."""
        data = self.trainer.datamodule.train_set.data
        with torch.no_grad():
            return torch.cat([self.posterior_mean(data[s:s + 256].to(self.device))
                              for s in range(0, len(data), 256)]).detach()

    # -- training ------------------------------------------------------------------------------
    def kl_beta(self) -> float:
        """beta at the current epoch (linear warm-up)."""
        if self._kl_warmup == 0:
            return self._kl_weight
        return self._kl_weight * min(1.0, self.current_epoch / self._kl_warmup)

    def training_horizon(self, n_steps: int) -> int:
        cfg = self._horizon
        if not cfg:
            return n_steps
        start, ramp = int(cfg.get("start", 10)), max(1, int(cfg.get("ramp_epochs", 100)))
        return min(n_steps, start + (n_steps - start) * self.current_epoch // ramp)

    def training_step(self, batch: TrialBatch, batch_idx: int) -> Tensor:
        data = batch.data
        mu, logvar = self.encode(torch.nan_to_num(data))
        gen = torch.Generator(device=data.device).manual_seed(self._noise_seed * 1_000_003 + self.global_step)
        z = mu + torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype) * (0.5 * logvar).exp()
        horizon = self.training_horizon(data.shape[1])
        recon = self.loss_fn(self.decode(z, horizon), data[:, :horizon])
        kl = gaussian_kl(mu, logvar).mean()
        loss = recon + self.kl_beta() * kl / (horizon * data.shape[2])
        B = len(batch.index)
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        self.log("train/recon", recon, batch_size=B)
        self.log("train/kl", kl, batch_size=B)
        self.log("train/horizon", float(horizon), batch_size=B)
        return loss

    def configure_optimizers(self):
        """``model.optimizer`` over all parameters; ``model.scheduler`` (if any) stepped once per epoch."""
        optimizer = self.make_optimizer(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.make_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.make_scheduler(optimizer, total_steps=max(1, self.trainer.max_epochs))}

    # -- held-out trials -------------------------------------------------------------------------
    def infer_embeddings(self, batch: TrialBatch, steps: int = 0) -> Tensor:
        """Embeddings (B, d) of held-out trials: the encoder's posterior mean (nothing to optimise)."""
        with torch.no_grad():
            return self.posterior_mean(batch.data)

    def _evaluate(self, batch: TrialBatch) -> tuple[Tensor, Tensor]:
        c = self.infer_embeddings(batch)
        with torch.no_grad():
            return c, self.predict(c, batch)

    def validation_step(self, batch: TrialBatch, batch_idx: int) -> None:
        c, pred = self._evaluate(batch)
        with torch.no_grad():
            recon = self.loss_fn(self.decode(c, batch.data.shape[1]), batch.data)
        for metric in self.val_metrics.values():
            metric.update(pred, batch.data)
        self.log("val/loss", recon, batch_size=len(batch.index))
        self.log_dict({f"val/{k}": m for k, m in self.val_metrics.items()}, batch_size=len(batch.index))

    def test_step(self, batch: TrialBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        c, pred = self._evaluate(batch)
        self.record_test(dataloader_idx, batch, c, pred, batch.data)
