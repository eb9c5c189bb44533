"""Neural Latents Benchmark metrics as torchmetrics (framework.md §10.1-10.4); NaN entries masked.

- ``BitsPerSpike``: co-bps (held-out neurons, §10.1) or fp-bps (forward window, §10.2), in the
  streaming form: states A = sum(lam - y ln lam), S_k = sum y, M_k = #valid bins, all summed across
  batches and ranks, then  co-bps = [sum_k (S_k - S_k ln(S_k / M_k)) - A] / (ln 2 sum_k S_k).
- ``VelocityR2``: ridge decoder (with intercept) from predicted rates to hand velocity, alpha from
  logspace(-4, 0, 9) by 5-fold unshuffled CV on the train rows, refitted on all of them, scored by
  the mean over velocity dimensions of R^2 on the eval rows. Closed form in float64 (cat states).
- ``PSTHR2``: per-condition mean predicted rate against a given true PSTH, per-neuron R^2 averaged.
- ``NLBEvaluator``: the four together, fed from JEDI batches (see its docstring for the call).

All rates are expected counts per bin (Hz x bin width).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

RIDGE_ALPHAS = tuple(np.logspace(-4, 0, 9).tolist())
_MIN_RATE = 1e-9


class BitsPerSpike(Metric):
    """Population-pooled bits per spike of predicted rates against spike counts (co-bps / fp-bps).

    ``update(rates, spikes)`` with both (..., K); bins where ``spikes`` is NaN are skipped.
    Rates must be >= 0 and not NaN on valid bins (0 is replaced by 1e-9).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, n_neurons: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state("model_term", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("spike_sum", default=torch.zeros(n_neurons, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("bin_count", default=torch.zeros(n_neurons, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, rates: Tensor, spikes: Tensor) -> None:
        if rates.shape != spikes.shape:
            raise ValueError(f"BitsPerSpike: rates shape {tuple(rates.shape)} != spikes shape {tuple(spikes.shape)}")
        K = spikes.shape[-1]
        y = spikes.detach().reshape(-1, K).double()  # (..., K) -> (M, K)
        lam = rates.detach().reshape(-1, K).double()
        valid = ~torch.isnan(y)
        if torch.isnan(lam[valid]).any():
            raise ValueError("BitsPerSpike: predicted rates are NaN on observed bins")
        if (lam[valid] < 0).any():
            raise ValueError("BitsPerSpike: predicted rates must be >= 0 (expected counts per bin)")
        lam = torch.where(valid, lam.clamp_min(_MIN_RATE), torch.ones_like(lam))
        y0 = torch.where(valid, y, torch.zeros_like(y))
        self.model_term += (torch.where(valid, lam, torch.zeros_like(lam)) - y0 * torch.log(lam)).sum()
        self.spike_sum += y0.sum(0)
        self.bin_count += valid.sum(0)

    def compute(self) -> Tensor:
        S, M = self.spike_sum, self.bin_count
        s_log = torch.where(S > 0, S * torch.log(S / M.clamp_min(1)), torch.zeros_like(S))  # 0 ln 0 := 0
        total = S.sum()
        if total <= 0:
            return torch.tensor(float("nan"))
        return ((S - s_log).sum() - self.model_term) / (math.log(2.0) * total)


def _ridge_fit(X: Tensor, Y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Ridge with an unpenalised intercept: X (n, F), Y (n, D) float64 -> (W (F, D), b (D,))."""
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    A = Xc.T @ Xc + alpha * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    W = torch.linalg.solve(A, Xc.T @ Yc)
    return W, ym - xm @ W


def r2_uniform(y: Tensor, yhat: Tensor) -> Tensor:
    """Mean over columns d of 1 - SSE_d / SST_d (SST about the column mean of y)."""
    sse = (y - yhat).square().sum(0)
    sst = (y - y.mean(0)).square().sum(0)
    return (1.0 - sse / sst).mean()


def kfold_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """Contiguous unshuffled folds; the first n % k folds hold one extra row (as sklearn's KFold)."""
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e)) for s, e in zip(sizes, ends)]


def select_ridge_alpha(X: Tensor, Y: Tensor, alphas: Sequence[float], n_folds: int) -> tuple[float, list[float]]:
    """Alpha with the best mean R^2 over unshuffled folds (first best on ties); also all scores."""
    scores = []
    folds = kfold_bounds(X.shape[0], n_folds)
    for alpha in alphas:
        fold_scores = []
        for lo, hi in folds:
            keep = torch.ones(X.shape[0], dtype=torch.bool)
            keep[lo:hi] = False
            W, b = _ridge_fit(X[keep], Y[keep], alpha)
            fold_scores.append(float(r2_uniform(Y[lo:hi], X[lo:hi] @ W + b)))
        scores.append(float(np.mean(fold_scores)))
    return float(alphas[int(np.argmax(scores))]), scores


class VelocityR2(Metric):
    """NLB velocity R^2: ridge from predicted rates (all neurons) to velocity, CV over alpha.

    ``update(rates, velocity, train)``: rates (..., F), velocity (..., D) at the same bins (already
    lagged); rows with any NaN are dropped. ``train=True`` rows fit the decoder, the others score it.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, alphas: Sequence[float] = RIDGE_ALPHAS, n_folds: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.alphas, self.n_folds = tuple(float(a) for a in alphas), n_folds
        for name in ("train_x", "train_y", "eval_x", "eval_y"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.alpha_: Optional[float] = None

    def update(self, rates: Tensor, velocity: Tensor, train: bool) -> None:
        X = rates.detach().reshape(-1, rates.shape[-1]).double()  # (..., F) -> (M, F)
        Y = velocity.detach().reshape(-1, velocity.shape[-1]).double()
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"VelocityR2: rates {tuple(rates.shape)} and velocity {tuple(velocity.shape)} differ in bins")
        keep = ~(torch.isnan(X).any(1) | torch.isnan(Y).any(1))
        if train:
            self.train_x.append(X[keep])
            self.train_y.append(Y[keep])
        else:
            self.eval_x.append(X[keep])
            self.eval_y.append(Y[keep])

    @staticmethod
    def _cat(state) -> Tensor:
        return torch.cat(state) if isinstance(state, list) else state

    def compute(self) -> Tensor:
        if not self.train_x or not self.eval_x:
            raise RuntimeError("VelocityR2: needs both train rows (train=True) and eval rows before compute()")
        Xtr, Ytr = self._cat(self.train_x), self._cat(self.train_y)
        Xev, Yev = self._cat(self.eval_x), self._cat(self.eval_y)
        if Xtr.shape[0] < self.n_folds:
            raise RuntimeError(f"VelocityR2: {Xtr.shape[0]} train rows is fewer than {self.n_folds} CV folds")
        self.alpha_, _ = select_ridge_alpha(Xtr, Ytr, self.alphas, self.n_folds)
        W, b = _ridge_fit(Xtr, Ytr, self.alpha_)
        return r2_uniform(Yev, Xev @ W + b)


class PSTHR2(Metric):
    """NLB PSTH R^2: per-condition mean predicted rate vs the true PSTH (C, T, K).

    ``update(rates (B, T, K), conditions (B,))``. Rows (c, t) enter if condition c was seen and the
    true PSTH is not NaN there; R^2_k = 1 - sum (P - Phat)^2 / sum (P - mean_k P)^2, averaged over k.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, psth: Tensor, **kwargs):
        super().__init__(**kwargs)
        psth = torch.as_tensor(psth, dtype=torch.float64)
        if psth.ndim != 3:
            raise ValueError(f"PSTHR2: psth must be (conditions, time, neurons), got shape {tuple(psth.shape)}")
        self.register_buffer("psth", psth)
        self.add_state("pred_sum", default=torch.zeros_like(psth), dist_reduce_fx="sum")
        self.add_state("trial_count", default=torch.zeros(psth.shape[0], dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, rates: Tensor, conditions: Tensor) -> None:
        if rates.shape[1:] != self.psth.shape[1:]:
            raise ValueError(f"PSTHR2: rates (B, T, K) = {tuple(rates.shape)} do not match psth {tuple(self.psth.shape)}")
        c = conditions.to(self.pred_sum.device).long()
        self.pred_sum.index_add_(0, c, rates.detach().double())
        self.trial_count.index_add_(0, c, torch.ones(len(c), dtype=torch.float64, device=c.device))

    def compute(self) -> Tensor:
        seen = self.trial_count > 0
        pred = self.pred_sum[seen] / self.trial_count[seen, None, None]
        true = self.psth[seen]
        K = true.shape[-1]
        P, Phat = true.reshape(-1, K), pred.reshape(-1, K)  # (C_seen * T, K)
        valid = ~torch.isnan(P)
        r2 = []
        for k in range(K):
            p, q = P[valid[:, k], k], Phat[valid[:, k], k]
            sst = (p - p.mean()).square().sum()
            if p.numel() and sst > 0:
                r2.append(1.0 - (p - q).square().sum() / sst)
        return torch.stack(r2).mean() if r2 else torch.tensor(float("nan"))


class NLBEvaluator(nn.Module):
    """The NLB metrics for a JEDI model whose data holds all neurons, held-out neurons last.

    Call pattern (rates are predicted expected counts per bin of ALL neurons, (B, T, K)):
        ev = NLBEvaluator.from_trialset(dm.full_set)        # reads meta n_heldout, psth
        ev.update_train(rates_train, batch_train)           # train trials: velocity decoder rows
        ev.update(rates_eval, batch_eval)                   # eval trials: co-bps, vel rows, PSTH
        ev.update_forward(rates_fwd, batch_eval)            # optional: (B, T_fwd, K) -> fp-bps
        ev.compute() -> {"co_bps", "vel_r2", "psth_r2", "fp_bps"} (those with data)
    ``batch`` is a TrialBatch: its ``condition``, ``extras["heldout_spikes"]`` (B, T, K_out),
    ``extras["velocity"]`` (B, T, D) and ``extras["forward_spikes"]`` (B, T_fwd, K) are read.
    """

    def __init__(self, n_neurons: int, n_heldout: int, psth: Optional[Tensor] = None,
                 alphas: Sequence[float] = RIDGE_ALPHAS, n_folds: int = 5):
        super().__init__()
        if not 0 < n_heldout <= n_neurons:
            raise ValueError(f"NLBEvaluator: n_heldout must be in [1, {n_neurons}], got {n_heldout}")
        self.n_neurons, self.n_heldout = n_neurons, n_heldout
        self.co_bps = BitsPerSpike(n_heldout)
        self.fp_bps = BitsPerSpike(n_neurons)
        self.vel_r2 = VelocityR2(alphas, n_folds)
        self.psth_r2 = PSTHR2(psth) if psth is not None else None
        self._seen = set()

    @classmethod
    def from_trialset(cls, trials, **kwargs) -> "NLBEvaluator":
        """Build from a reach TrialSet (needs ``meta['n_heldout']``; ``meta['psth']`` optional)."""
        if "n_heldout" not in trials.meta:
            raise ValueError("NLBEvaluator: the TrialSet has no meta['n_heldout']; use a reach loader")
        psth = trials.meta.get("psth")
        return cls(trials.data.shape[2], int(trials.meta["n_heldout"]),
                   torch.as_tensor(psth) if psth is not None else None, **kwargs)

    def _check(self, rates: Tensor) -> None:
        if rates.shape[-1] != self.n_neurons:
            raise ValueError(f"NLBEvaluator: rates have {rates.shape[-1]} neurons, expected all {self.n_neurons}")

    def update_train(self, rates: Tensor, batch) -> None:
        self._check(rates)
        if "velocity" in batch.extras:
            self.vel_r2.update(rates, batch.extras["velocity"], train=True)
            self._seen.add("vel_train")

    def update(self, rates: Tensor, batch) -> None:
        self._check(rates)
        held = batch.extras.get("heldout_spikes")
        if held is None:
            held = batch.data[..., -self.n_heldout:]
        self.co_bps.update(rates[..., -self.n_heldout:], held)
        self._seen.add("co_bps")
        if "velocity" in batch.extras:
            self.vel_r2.update(rates, batch.extras["velocity"], train=False)
            self._seen.add("vel_eval")
        if self.psth_r2 is not None:
            self.psth_r2.update(rates, batch.condition)
            self._seen.add("psth")

    def update_forward(self, rates: Tensor, batch) -> None:
        self._check(rates)
        if "forward_spikes" not in batch.extras:
            raise ValueError("NLBEvaluator.update_forward: the batch has no extras['forward_spikes']")
        self.fp_bps.update(rates, batch.extras["forward_spikes"])
        self._seen.add("fp_bps")

    def compute(self) -> dict[str, float]:
        out = {}
        if "co_bps" in self._seen:
            out["co_bps"] = float(self.co_bps.compute())
        if {"vel_train", "vel_eval"} <= self._seen:
            out["vel_r2"] = float(self.vel_r2.compute())
        if "psth" in self._seen:
            out["psth_r2"] = float(self.psth_r2.compute())
        if "fp_bps" in self._seen:
            out["fp_bps"] = float(self.fp_bps.compute())
        return out

    def reset(self) -> None:
        for m in (self.co_bps, self.fp_bps, self.vel_r2, self.psth_r2):
            if m is not None:
                m.reset()
        self._seen = set()
