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


def unroll(weights: RecurrentWeights, x0: Tensor, alpha: float, n_steps: int, drive: Optional[Tensor] = None,
           noise: Optional[Tensor] = None, rates: bool = False) -> Tensor:
    """States x_0..x_{n_steps} from x0 (B, N) or (B, K, N), stacked on dim -2: (B, n_steps + 1, N)
    or (B, K, n_steps + 1, N); with ``rates`` the rates tanh(x_0)..tanh(x_{n_steps}) instead.
    ``drive`` and ``noise`` hold one entry per step on that dim (step t uses ``drive[..., t, :]`` and
    then adds ``noise[..., t, :]``). Plain autograd; each step's tanh is computed once."""
    x, r = x0, torch.tanh(x0)
    out = [r if rates else x]
    for t in range(n_steps):
        x = rate_update(x, r, weights, alpha, drive[..., t, :] if drive is not None else None)
        if noise is not None:
            x = x + noise[..., t, :]
        r = torch.tanh(x)
        out.append(r if rates else x)
    return torch.stack(out, -2)
