"""The discrete tanh rate RNN shared by the student, the teachers and the analyses.

One Euler step with alpha = dt / tau (spec jedi.md §8a, §8e, §8f):

    x_{t+1} = (1 - alpha) x_t + alpha (W r_t + b + u_t) + noise_t,    r_t = tanh(x_t)

W is low rank, W = U V^T / N (never materialised), a full per-trial matrix J, and/or a shared
base matrix; b a per-trial bias; u_t an external drive (a teacher's input W_in u_t).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor


class RecurrentWeights(NamedTuple):
    """Per-trial recurrent weights emitted by a hypernetwork (or held by a baseline or teacher).

    Low rank: ``U``, ``V`` of shape (B, N, R), W = U V^T / N. Full rank: ``J`` of shape (B, N, N).
    ``base`` is an optional shared (N, N) matrix added to either, or W alone when neither is given
    (one matrix for the whole batch); ``bias`` is (B, N) or None.
    """

    U: Optional[Tensor] = None
    V: Optional[Tensor] = None
    J: Optional[Tensor] = None
    base: Optional[Tensor] = None
    bias: Optional[Tensor] = None

    @property
    def n_units(self) -> int:
        if self.U is not None:
            return self.U.shape[1]
        return (self.J if self.J is not None else self.base).shape[-1]

    def dense(self) -> Tensor:
        """Materialise W(c) as (B, N, N) ((N, N) for a base matrix alone); for analyses only."""
        if self.J is not None:
            W = self.J
        elif self.U is not None:
            W = self.U @ self.V.transpose(1, 2) / self.U.shape[1]
        else:
            return self.base
        if self.base is not None:
            W = W + self.base
        return W

    def apply(self, r: Tensor) -> Tensor:
        """W r for rates r (B, N) or (B, K, N) (K states per trial) -> the same shape."""
        rk = r.unsqueeze(1) if r.dim() == 2 else r  # (B, K, N)
        out = None
        if self.J is not None:
            out = rk @ self.J.transpose(1, 2)
        elif self.U is not None:
            out = (rk @ self.V) @ self.U.transpose(1, 2) / self.U.shape[1]  # (B, K, R) -> (B, K, N)
        if self.base is not None:
            out = rk @ self.base.T if out is None else out + rk @ self.base.T
        return out.squeeze(1) if r.dim() == 2 else out

    def apply_T(self, g: Tensor) -> Tensor:
        """W^T g for g (B, N) or (B, K, N) -> the same shape."""
        gk = g.unsqueeze(1) if g.dim() == 2 else g
        out = None
        if self.J is not None:
            out = gk @ self.J
        elif self.U is not None:
            out = (gk @ self.U) @ self.V.transpose(1, 2) / self.U.shape[1]
        if self.base is not None:
            out = gk @ self.base if out is None else out + gk @ self.base
        return out.squeeze(1) if g.dim() == 2 else out

    def recurrent_input(self, r: Tensor) -> Tensor:
        """W r + b for rates r (B, N) or (B, K, N) (the bias is shared by a trial's K states)."""
        out = self.apply(r)
        if self.bias is not None:
            out = out + (self.bias if r.dim() == 2 else self.bias.unsqueeze(1))
        return out


def rate_update(x: Tensor, r: Tensor, weights: RecurrentWeights, alpha: float,
                drive: Optional[Tensor] = None) -> Tensor:
    """(1 - alpha) x + alpha (W r + b + drive) for states x and their rates r = tanh(x), both
    (B, N) or (B, K, N); ``drive`` (same shape) is an external input, None for none."""
    inp = weights.recurrent_input(r)
    if drive is not None:
        inp = inp + drive
    return (1.0 - alpha) * x + alpha * inp


def rate_step(x: Tensor, weights: RecurrentWeights, alpha: float, drive: Optional[Tensor] = None) -> Tensor:
    """One noise-free step x_t -> x_{t+1} of the tanh rate RNN (see ``rate_update``)."""
    return rate_update(x, torch.tanh(x), weights, alpha, drive)


class StepOperator:
    """alpha W and alpha W^T of one set of weights as fused multiply-adds on rows (B, K, N), for
    unrolls: the factors are scaled and laid out once, so the recurrent term of a step is one or two
    batched matmul-adds (``torch.baddbmm``) instead of a chain of small ops (a step is dominated by
    per-op overhead at the student's sizes)."""

    def __init__(self, weights: RecurrentWeights, alpha: float):
        w = weights
        self.lowrank = w.U is not None and w.U.shape[-1] > 0
        if self.lowrank:
            scale = alpha / w.U.shape[-2]
            self.U, self.V = w.U, w.V
            self.Ut, self.Vt = scale * w.U.transpose(-1, -2), scale * w.V.transpose(-1, -2)  # (B, R, N)
        self.J = alpha * w.J if w.J is not None else None  # (B, N, N)
        self.base = alpha * w.base if w.base is not None else None  # (N, N)

    def add(self, out: Tensor, r: Tensor) -> Tensor:
        """out + alpha W r for rows r and out (B, K, N)."""
        if self.lowrank:
            out = torch.baddbmm(out, torch.bmm(r, self.V), self.Ut)  # (B, K, R) -> (B, K, N)
        if self.J is not None:
            out = torch.baddbmm(out, r, self.J.transpose(1, 2))
        if self.base is not None:
            out = out + r @ self.base.T
        return out

    def add_T(self, out: Tensor, g: Tensor) -> Tensor:
        """out + alpha W^T g for rows g and out (B, K, N)."""
        if self.lowrank:
            out = torch.baddbmm(out, torch.bmm(g, self.U), self.Vt)
        if self.J is not None:
            out = torch.baddbmm(out, g, self.J)
        if self.base is not None:
            out = out + g @ self.base
        return out


def unroll(weights: RecurrentWeights, x0: Tensor, alpha: float, n_steps: int, drive: Optional[Tensor] = None,
           noise: Optional[Tensor] = None, rates: bool = False) -> Tensor:
    """States x_0..x_{n_steps} from x0 (B, N) or (B, K, N), stacked on dim -2: (B, n_steps + 1, N)
    or (B, K, n_steps + 1, N); with ``rates`` the rates tanh(x_0)..tanh(x_{n_steps}) instead.
    ``drive`` and ``noise`` hold one entry per step on that dim (step t uses ``drive[..., t, :]`` and
    then adds ``noise[..., t, :]``). Plain autograd; the update of ``rate_update`` (plus the noise),
    computed as (1 - alpha) x + [alpha (b + u_t) + noise_t] + alpha W r with each step's tanh once."""
    op = StepOperator(weights, alpha)
    per_trial = x0.dim() == 2
    x = x0.unsqueeze(1) if per_trial else x0  # (B, K, N)
    # what a step adds besides (1 - alpha) x and alpha W r: alpha (b + u_t) + noise_t
    per_step = None
    if drive is not None:
        per_step = alpha * drive
    if noise is not None:
        per_step = noise if per_step is None else per_step + noise
    if per_step is not None and per_trial:
        per_step = per_step.unsqueeze(1)  # (B, T, N) -> (B, 1, T, N)
    const = alpha * weights.bias.unsqueeze(1) if weights.bias is not None else None  # (B, 1, N)
    if per_step is not None and const is not None:
        per_step = per_step + const.unsqueeze(2)
    r = torch.tanh(x)
    out = [r if rates else x]
    for t in range(n_steps):
        offset = per_step[:, :, t] if per_step is not None else const
        x = (1.0 - alpha) * x if offset is None else torch.add(offset, x, alpha=1.0 - alpha)
        x = op.add(x, r)
        r = torch.tanh(x)
        out.append(r if rates else x)
    traj = torch.stack(out, -2)  # (B, K, n_steps + 1, N)
    return traj.squeeze(1) if per_trial else traj
