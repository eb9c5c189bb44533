"""JEDI as a LightningModule: context table -> hypernetwork -> student RNN, fitted to trials.

Training optimises the hypernetwork (and readout) jointly with one embedding per training trial.
Validation and test infer a fresh embedding for every held-out trial with everything else frozen
(spec jedi.md §8b) and score the reconstruction on those trials.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights
from jedi_rnn.evaluation import TEST_SPLITS, HeldOutEvaluation, InferredEmbeddings  # noqa: F401 (re-exported)
from jedi_rnn.losses import MaskedMSE, embedding_l2
from jedi_rnn.models.embedding_init import pca_embeddings
from jedi_rnn.models.embeddings import ContextTable
from jedi_rnn.models.inference_starts import STARTS, candidate_starts
from jedi_rnn.models.rnn import RateRNN
from jedi_rnn.optim import SparseTableClipping, build_optimizer


class JediModule(SparseTableClipping, HeldOutEvaluation):
    """JEDI: per-trial context embeddings mapped by a hypernetwork to the student's recurrent weights.

    Args (the first five are late sizes from the datamodule's ``dims``):
        hypernet: partial constructor ``(embedding_dim, n_units) -> LowRankHypernet | FullRankHypernet``.
        rnn: partial constructor ``(dt) -> RateRNN``.
        loss: reconstruction loss (``MaskedMSE`` on rates, ``PoissonNLL`` on counts).
        latent_dim: None for one unit per observed neuron; M for M units and a linear readout.
        init_state: ``data`` (x_0 = atanh(y_0), unit mode only) or ``context`` (x_0 from c).
        shared_lr: learning rate of the hypernetwork's output bias, i.e. the shared factors every
            context starts from (J(c) = (U_0 + dU(c))(V_0 + dV(c))^T / N). Adam's per-weight steps
            through the wide output layer move dU(c) fast, so U_0 needs a larger rate to keep up.
        noise_seed: process noise is drawn from a generator seeded by (noise_seed, global step), so a
            resumed run draws the same noise as an uninterrupted one.
        horizon: BPTT horizon curriculum ``{start: 10, ramp_epochs: 100}``: training unrolls and scores
            only the first H bins, H growing linearly from ``start`` to the full trial over
            ``ramp_epochs``; None trains on whole trials from the start. Fitting oscillations over
            many cycles from the start puts the loss in a landscape of phase-slip minima.
        optimizer: partial constructor ``(parameter groups) -> Optimizer`` (``model.optimizer``); every
            group carries its own rate (``lr``, ``shared_lr``, ``embedding_lr``) and weight decay.
        scheduler: None (constant rates) or a partial ``(optimizer, total_steps) -> LRScheduler``
            (``model.scheduler``), stepped once per epoch over ``trainer.max_epochs``.
        sparse_embeddings: the table gets gradients on its batch's rows only and SparseAdam updates
            it (``jedi_rnn.optim``): a step's cost does not grow with the number of training trials.
        embedding_init: ``random`` (N(0, embedding_init_std²)) or ``pca`` (per-trial table only: each
            training trial starts at its principal components of phase-invariant activity features,
            :func:`jedi_rnn.models.embedding_init.pca_embeddings`, scaled to embedding_init_std).
        infer: held-out embedding inference: steps (test), val_steps, lr, split (none | time | neurons),
            fraction (time split), heldout_neurons (fraction held out in the neuron split),
            init (centres | centres_between | mean: label-free starts from the context table,
            :mod:`jedi_rnn.models.inference_starts`), n_centres, neighbours (centres_between).
    """

    def __init__(self, n_neurons: int, n_train_trials: int, n_conditions: int, n_steps: int, dt: float,
                 hypernet: Callable[..., nn.Module], rnn: Callable[..., RateRNN], loss: Optional[nn.Module] = None,
                 embedding_dim: int = 8, embedding_tie: str = "trial", embedding_init: str = "random",
                 embedding_init_std: float = 0.1,
                 embedding_l2: float = 1e-4, latent_dim: Optional[int] = None, init_state: str = "data",
                 lr: float = 1e-3, embedding_lr: float = 1e-2, shared_lr: float = 3e-2, weight_decay: float = 0.0,
                 noise_seed: int = 0, horizon: Optional[dict] = None, sparse_embeddings: bool = False,
                 optimizer: Callable[..., Optimizer] = torch.optim.AdamW,
                 scheduler: Optional[Callable[..., LRScheduler]] = None, infer: Optional[dict] = None):
        super().__init__()
        self.save_hyperparameters(ignore=["hypernet", "rnn", "loss", "optimizer", "scheduler"])
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        if init_state not in ("data", "context"):
            raise ValueError(f"model.init_state must be 'data' or 'context', got {init_state!r}")
        if latent_dim is not None and init_state == "data":
            raise ValueError("model.init_state=data needs one unit per neuron; use init_state=context with model.latent_dim")
        self.loss_fn = loss if loss is not None else MaskedMSE()
        self.n_units = latent_dim or n_neurons
        self.embeddings = ContextTable(n_train_trials, n_conditions, embedding_dim, embedding_tie, embedding_init_std,
                                       sparse=sparse_embeddings)
        self.hypernet = hypernet(embedding_dim=embedding_dim, n_units=self.n_units, init_state=init_state == "context")
        self.rnn = rnn(dt=dt)
        self.readout = nn.Linear(self.n_units, n_neurons) if latent_dim is not None else None
        if embedding_init not in ("random", "pca"):
            raise ValueError(f"model.embedding_init must be random or pca, got {embedding_init!r}")
        if embedding_init == "pca" and embedding_tie != "trial":
            raise ValueError("model.embedding_init=pca initialises a per-trial table: it needs model.embedding_tie=trial")
        self.infer_cfg = {"steps": 300, "val_steps": 50, "lr": 1e-2, "init": "centres_between", "n_centres": 16,
                          "neighbours": 8, "split": "none", "fraction": 0.5, "heldout_neurons": 0.25, **(infer or {})}
        if self.infer_cfg["init"] not in STARTS:
            raise ValueError(f"model.infer.init must be one of {list(STARTS)}, got {self.infer_cfg['init']!r}")
        if self.infer_cfg["split"] not in ("none", "time", "neurons"):
            raise ValueError(f"model.infer.split must be none, time or neurons, got {self.infer_cfg['split']!r}")
        if self.infer_cfg["split"] == "neurons" and init_state == "data":
            raise ValueError("model.infer.split=neurons with init_state=data would read held-out neurons' first frame")
        self.init_evaluation(n_neurons)

    # -- model -------------------------------------------------------------------------------
    def weights_for(self, c: Tensor) -> RecurrentWeights:
        """Recurrent weights of the student for contexts c (B, d)."""
        return self.hypernet(c)

    def initial_state(self, c: Tensor, data: Tensor) -> Tensor:
        if self.hparams.init_state == "context":
            return self.hypernet.initial_state(c)
        y0 = torch.nan_to_num(data[:, 0]).clamp(-0.999, 0.999)
        return torch.atanh(y0)

    def _raw(self, c: Tensor, data: Tensor) -> Tensor:
        """Unlinked prediction (B, T, K): rates (MSE) or log-rates (Poisson)."""
        gen = None
        if self.training and self.rnn.noise_std > 0:
            gen = torch.Generator(device=data.device)
            gen.manual_seed(self.hparams.noise_seed * 1_000_003 + self.global_step)
        rates = self.rnn(self.weights_for(c), self.initial_state(c, data), data.shape[1], generator=gen)
        return rates if self.readout is None else self.readout(rates)

    def predict(self, c: Tensor, batch: TrialBatch) -> Tensor:
        """Predicted observations (B, T, K) in data units (rates, or expected counts per bin)."""
        raw = self._raw(c, batch.data)
        return torch.exp(raw) if getattr(self.loss_fn, "link", "identity") == "exp" else raw

    def train_embeddings(self) -> Tensor:
        """Embeddings of the training trials (n_train, d), in the training set's order."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        conditions = dm.train_set.conditions.to(self.device) if dm is not None else None
        return self.embeddings.per_trial(conditions).detach()

    def _objective(self, c: Tensor, data: Tensor) -> tuple[Tensor, Tensor]:
        recon = self.loss_fn(self._raw(c, data), data)
        return recon + self.hparams.embedding_l2 * embedding_l2(c), recon

    # -- training ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Data-driven table initialisation (``embedding_init=pca``) from the training trials'
        activity, before Lightning restores a checkpoint (a resumed run keeps its trained table)."""
        if stage != "fit" or self.hparams.embedding_init != "pca":
            return
        data = self.trainer.datamodule.train_set.data  # a tensor, or trials on disk read a block at a time
        with torch.no_grad():
            self.embeddings.table.weight.copy_(pca_embeddings(data, self.embeddings.dim, self.hparams.embedding_init_std))

    def training_horizon(self, n_steps: int) -> int:
        """Bins unrolled in training at the current epoch (the curriculum, or the whole trial)."""
        cfg = self.hparams.horizon
        if not cfg:
            return n_steps
        start, ramp = int(cfg.get("start", 10)), max(1, int(cfg.get("ramp_epochs", 100)))
        return min(n_steps, start + (n_steps - start) * self.current_epoch // ramp)

    def training_step(self, batch: TrialBatch, batch_idx: int) -> Tensor:
        c = self.embeddings(batch.index, batch.condition)
        horizon = self.training_horizon(batch.data.shape[1])
        loss, recon = self._objective(c, batch.data[:, :horizon])
        self.log("train/horizon", float(horizon), batch_size=len(batch.index))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.index))
        self.log("train/recon", recon, batch_size=len(batch.index))
        return loss

    def parameter_groups(self) -> list[dict]:
        """Optimiser groups: network weights, the hypernetwork's shared factors, the embedding table
        last (a hook for models that swap the hypernetwork, e.g. jedi_rnn.baselines)."""
        shared = {"hypernet.head.bias"}
        net = [p for n, p in self.named_parameters() if not n.startswith("embeddings.") and n not in shared]
        return [
            {"params": net, "lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay},
            {"params": [self.hypernet.head.bias], "lr": self.hparams.shared_lr, "weight_decay": 0.0},
            {"params": self.embeddings.parameters(), "lr": self.hparams.embedding_lr, "weight_decay": 0.0},
        ]

    def configure_optimizers(self):
        optimizer = build_optimizer(self.make_optimizer, self.parameter_groups(), self.hparams.sparse_embeddings)
        if self.make_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.make_scheduler(optimizer, total_steps=max(1, self.trainer.max_epochs))}

    # -- held-out trials -------------------------------------------------------------------------
    def _fit_and_score_masks(self, data: Tensor) -> tuple[Tensor, Tensor]:
        """Data views (NaN outside) used to fit the embedding and to score it (infer.split)."""
        split = self.infer_cfg["split"]
        if split == "none":
            return data, data
        fit, score = data.clone(), data.clone()
        if split == "time":
            cut = int(round(self.infer_cfg["fraction"] * data.shape[1]))
            fit[:, cut:], score[:, :cut] = float("nan"), float("nan")
        else:
            cut = data.shape[2] - int(round(self.infer_cfg["heldout_neurons"] * data.shape[2]))
            fit[:, :, cut:], score[:, :, :cut] = float("nan"), float("nan")
        return fit, score

    def candidate_embeddings(self) -> Tensor:
        """Starting points for held-out inference (M, d), from the context table's rows alone
        (``infer.init``); the objective is non-convex, so a trial starts from the one that fits it best."""
        rows = self.embeddings.table.weight.detach()
        cfg = self.infer_cfg
        return candidate_starts(rows, cfg["init"], cfg["n_centres"], cfg["neighbours"], seed=self.hparams.noise_seed)

    def infer_embeddings(self, batch: TrialBatch, steps: int) -> Tensor:
        """Fresh embeddings (B, d) for held-out trials, optimised with everything else frozen.

        Each trial starts at the candidate (:meth:`candidate_embeddings`) with the lowest loss on its
        data, then Adam descends the training objective. Embeddings are independent, so solving the
        whole batch at once is exact. No condition label is read.
        """
        fit, _ = self._fit_and_score_masks(batch.data)
        B = len(batch.index)
        candidates = self.candidate_embeddings()
        with torch.no_grad():
            losses = self.candidate_losses(candidates, fit)  # (M, B)
        c = candidates[losses.argmin(0)].clone().requires_grad_(True)
        opt = torch.optim.Adam([c], lr=self.infer_cfg["lr"])
        with torch.enable_grad():
            for _ in range(steps):
                loss, _ = self._objective(c, fit)
                # gradient w.r.t. c only: the frozen network's .grad buffers are never touched
                (c.grad,) = torch.autograd.grad(loss * B, [c])
                opt.step()
        return c.detach()

    def candidate_losses(self, candidates: Tensor, data: Tensor) -> Tensor:
        """Noise-free reconstruction loss of each trial of ``data`` (B, T, K) under each candidate
        embedding (M, d): (M, B). A candidate's weights serve every trial: one weight set, B states."""
        B, T, _ = data.shape
        losses = []
        for cand in candidates:
            x0 = self.initial_state(cand.expand(B, -1), data[:, :1])  # (B, N), from the frame or the candidate
            rates = self.rnn.rates(self.weights_for(cand[None]), x0[None], T)[0]  # (1, B, T, N) -> (B, T, N)
            raw = rates if self.readout is None else self.readout(rates)
            losses.append(self.loss_fn(raw, data, per_trial=True))  # (B,)
        return torch.stack(losses)

    def _evaluate(self, batch: TrialBatch, steps: int) -> tuple[Tensor, Tensor, Tensor]:
        c = self.infer_embeddings(batch, steps)
        _, score = self._fit_and_score_masks(batch.data)
        with torch.no_grad():
            pred = self.predict(c, batch)
        return c, pred, score

    def validation_step(self, batch: TrialBatch, batch_idx: int) -> None:
        c, pred, score = self._evaluate(batch, self.infer_cfg["val_steps"])
        with torch.no_grad():
            _, recon = self._objective(c, score)
        for metric in self.val_metrics.values():
            metric.update(pred, score)
        self.log("val/loss", recon, batch_size=len(batch.index), sync_dist=True)
        self.log_dict({f"val/{k}": m for k, m in self.val_metrics.items()}, batch_size=len(batch.index))

    def test_step(self, batch: TrialBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        c, pred, score = self._evaluate(batch, self.infer_cfg["steps"])
        self.record_test(dataloader_idx, batch, c, pred, score)
