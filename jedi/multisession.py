"""Multi-session JEDI: one model over sessions with different neurons (data=jedi/sessions).

Every training trial of every session has its own embedding in one table; the hypernetwork maps it to
the weights of a shared latent RNN of M units. Session s reads in its first frame to the RNN's
initial state and reads the latent rates out to its K_s neurons through its own linear layers
(jedi_rnn.models.session_io). Held-out trials get a fresh embedding by descent with everything else
frozen, started from label-free candidates (k-means centres of the table over all sessions), so a
session with few trials borrows the dynamics the others taught the shared part.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.losses import MaskedMSE, embedding_l2
from jedi_rnn.metrics.r2 import VarianceWeightedR2
from jedi_rnn.models.inference_starts import candidate_starts
from jedi_rnn.models.rnn import RateRNN
from jedi_rnn.models.session_io import SessionReadIn, SessionReadOut
from jedi_rnn.optim import SparseTableClipping, build_optimizer


class MultiSessionJedi(SparseTableClipping, pl.LightningModule):
    """JEDI with per-session read-in / read-out around the shared hypernetwork and latent RNN.

    Args (the first five are late sizes from ``SessionsDataModule.dims``):
        hypernet: partial constructor ``(embedding_dim, n_units) -> LowRankHypernet | FullRankHypernet``.
        rnn: partial constructor ``(dt) -> RateRNN``.
        latent_dim: M, the shared RNN's units.
        optimizer: partial ``(parameter groups) -> Optimizer``; sparse_embeddings: the table on
            SparseAdam with row-sparse gradients (``jedi_rnn.optim``); scheduler: None or a partial
            ``(optimizer, total_steps) -> LRScheduler`` stepped every optimiser step over the run.
        infer: held-out inference: steps (test), val_steps, lr, init (centres | centres_between | mean),
            n_centres, neighbours (see jedi_rnn.models.inference_starts).
    Logs ``{val,test}/r2_<session>`` (variance-weighted R^2 on the session's held-out trials) and
    ``{val,test}/r2``, their mean over sessions.
    """

    def __init__(self, session_names: Sequence[str], session_neurons: Sequence[int], n_train_trials: int,
                 n_steps: int, dt: float, hypernet: Callable[..., nn.Module], rnn: Callable[..., RateRNN],
                 loss: Optional[nn.Module] = None, latent_dim: int = 32, embedding_dim: int = 8,
                 embedding_init_std: float = 0.1, embedding_l2: float = 1e-4, lr: float = 1e-3,
                 embedding_lr: float = 1e-2, shared_lr: float = 3e-2, weight_decay: float = 0.0,
                 noise_seed: int = 0, sparse_embeddings: bool = False,
                 optimizer: Callable[..., Optimizer] = torch.optim.AdamW,
                 scheduler: Optional[Callable[..., LRScheduler]] = None, infer: Optional[dict] = None):
        super().__init__()
        self.save_hyperparameters(ignore=["hypernet", "rnn", "loss", "optimizer", "scheduler"])
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        if len(session_names) != len(session_neurons):
            raise ValueError(f"{len(session_names)} session names for {len(session_neurons)} neuron counts")
        self.loss_fn = loss if loss is not None else MaskedMSE()
        # one row per training trial, all sessions
        self.embeddings = nn.Embedding(n_train_trials, embedding_dim, sparse=sparse_embeddings)
        nn.init.normal_(self.embeddings.weight, std=embedding_init_std)
        self.hypernet = hypernet(embedding_dim=embedding_dim, n_units=latent_dim)
        self.rnn = rnn(dt=dt)
        self.read_in = SessionReadIn(session_neurons, latent_dim)
        self.read_out = SessionReadOut(session_neurons, latent_dim)
        self.infer_cfg = {"steps": 300, "val_steps": 50, "lr": 1e-2, "init": "centres", "n_centres": 16,
                          "neighbours": 3, **(infer or {})}
        self.val_r2 = nn.ModuleList(VarianceWeightedR2(k) for k in session_neurons)
        self.test_r2 = nn.ModuleList(VarianceWeightedR2(k) for k in session_neurons)
        self._starts: Optional[Tensor] = None

    # -- model -------------------------------------------------------------------------------
    @staticmethod
    def session_of(batch: TrialBatch) -> int:
        """The one session a batch's trials come from (SessionBatchSampler never mixes sessions)."""
        s = batch.extras["session"]
        if not bool((s == s[0]).all()):
            raise ValueError(f"a batch mixes sessions {sorted(set(s.tolist()))}; use SessionsDataModule's loaders")
        return int(s[0])

    def _raw(self, c: Tensor, data: Tensor, session: int) -> Tensor:
        """Unlinked prediction (B, T, K_s) of session ``session``'s neurons for embeddings c (B, d)."""
        gen = None
        if self.training and self.rnn.noise_std > 0:
            gen = torch.Generator(device=data.device)
            gen.manual_seed(self.hparams.noise_seed * 1_000_003 + self.global_step)
        x0 = self.read_in(session, data[:, 0])  # (B, K_s) -> (B, M)
        rates = self.rnn(self.hypernet(c), x0, data.shape[1], generator=gen)  # (B, T, M)
        return self.read_out(session, rates)

    def predict(self, c: Tensor, data: Tensor, session: int) -> Tensor:
        """Predicted observations (B, T, K_s) in data units."""
        raw = self._raw(c, data, session)
        return torch.exp(raw) if getattr(self.loss_fn, "link", "identity") == "exp" else raw

    def _objective(self, c: Tensor, data: Tensor, session: int) -> tuple[Tensor, Tensor]:
        recon = self.loss_fn(self._raw(c, data, session), data)
        return recon + self.hparams.embedding_l2 * embedding_l2(c), recon

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: TrialBatch, batch_idx: int) -> Tensor:
        loss, recon = self._objective(self.embeddings(batch.index), batch.data, self.session_of(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.index))
        self.log("train/recon", recon, batch_size=len(batch.index))
        return loss

    def configure_optimizers(self):
        shared = {"hypernet.head.bias"}
        net = [p for n, p in self.named_parameters() if not n.startswith("embeddings.") and n not in shared]
        optimizer = build_optimizer(self.make_optimizer, [
            {"params": net, "lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay},
            {"params": [self.hypernet.head.bias], "lr": self.hparams.shared_lr, "weight_decay": 0.0},
            {"params": self.embeddings.parameters(), "lr": self.hparams.embedding_lr, "weight_decay": 0.0},
        ], self.hparams.sparse_embeddings)
        if self.make_scheduler is None:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.make_scheduler(optimizer, total_steps=total), "interval": "step"}}

    # -- held-out trials -------------------------------------------------------------------------
    def _update_starts(self) -> None:
        cfg = self.infer_cfg
        self._starts = candidate_starts(self.embeddings.weight.detach(), cfg["init"], cfg["n_centres"],
                                        cfg["neighbours"], seed=self.hparams.noise_seed)

    def on_validation_epoch_start(self) -> None:
        self._update_starts()

    def on_test_epoch_start(self) -> None:
        self._update_starts()

    def infer_embeddings(self, data: Tensor, session: int, steps: int) -> Tensor:
        """Fresh embeddings (B, d) for held-out trials of one session: each starts at the candidate that
        fits it best, then Adam descends the training objective with everything else frozen."""
        if self._starts is None:
            self._update_starts()
        B = len(data)
        with torch.no_grad():
            losses = torch.stack([self._per_trial_loss(cand.expand(B, -1), data, session)
                                  for cand in self._starts])  # (M, B)
        c = self._starts[losses.argmin(0)].clone().requires_grad_(True)
        opt = torch.optim.Adam([c], lr=self.infer_cfg["lr"])
        with torch.enable_grad():
            for _ in range(steps):
                loss, _ = self._objective(c, data, session)
                # gradient w.r.t. c only; embeddings are independent, so the batch mean times B is exact
                (c.grad,) = torch.autograd.grad(loss * B, [c])
                opt.step()
        return c.detach()

    def _per_trial_loss(self, c: Tensor, data: Tensor, session: int) -> Tensor:
        return self.loss_fn(self._raw(c, data, session), data, per_trial=True)

    def _evaluate(self, batch: TrialBatch, steps: int, metrics: nn.ModuleList) -> Tensor:
        s = self.session_of(batch)
        c = self.infer_embeddings(batch.data, s, steps)
        with torch.no_grad():
            pred = self.predict(c, batch.data, s)
            metrics[s].update(pred, batch.data)
            return self._objective(c, batch.data, s)[1]

    def _log_sessions(self, stage: str, metrics: nn.ModuleList) -> None:
        values = {}
        for name, metric in zip(self.hparams.session_names, metrics):
            if metric.update_called:
                values[f"{stage}/r2_{name}"] = metric.compute()
            metric.reset()
        if values:
            values[f"{stage}/r2"] = torch.stack(list(values.values())).mean()
            self.log_dict(values)

    def validation_step(self, batch: TrialBatch, batch_idx: int) -> None:
        recon = self._evaluate(batch, self.infer_cfg["val_steps"], self.val_r2)
        self.log("val/loss", recon, batch_size=len(batch.index))

    def on_validation_epoch_end(self) -> None:
        self._log_sessions("val", self.val_r2)

    def test_step(self, batch: TrialBatch, batch_idx: int) -> None:
        recon = self._evaluate(batch, self.infer_cfg["steps"], self.test_r2)
        self.log("test/loss", recon, batch_size=len(batch.index))

    def on_test_epoch_end(self) -> None:
        self._log_sessions("test", self.test_r2)
