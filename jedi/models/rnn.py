"""The autonomous noisy tanh rate RNN (the JEDI student) with a hand-written BPTT.

Discrete Euler update, alpha = dt / tau (spec jedi.md §8a):

    x_{t+1} = (1 - alpha) x_t + alpha (W r_t + b) + noise_t,    r_t = tanh(x_t)

W is either low rank, W = U V^T / N (never materialised), or a full per-trial matrix J.
The unroll runs as one autograd node: the forward loop records no graph and the backward loop
is written out, so parameter gradients become single batched contractions over time
(dU = alpha/N G^T K, dJ = alpha G^T R) instead of T small accumulations.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn


class RecurrentWeights(NamedTuple):
    """Per-trial recurrent weights emitted by a hypernetwork (or held by a baseline).

    Low rank: ``U``, ``V`` of shape (B, N, R), W = U V^T / N. Full rank: ``J`` of shape (B, N, N).
    ``base`` is an optional shared (N, N) matrix added to either; ``bias`` is (B, N) or None.
    """

    U: Optional[Tensor] = None
    V: Optional[Tensor] = None
    J: Optional[Tensor] = None
    base: Optional[Tensor] = None
    bias: Optional[Tensor] = None

    @property
    def n_units(self) -> int:
        return (self.U if self.U is not None else self.J).shape[1]

    def dense(self) -> Tensor:
        """Materialise W(c) as (B, N, N); for analyses only (cheap at N <= 200)."""
        if self.J is not None:
            W = self.J
        else:
            W = self.U @ self.V.transpose(1, 2) / self.U.shape[1]
        if self.base is not None:
            W = W + self.base
        return W

    def apply(self, r: Tensor) -> Tensor:
        """W r for a batch of rates r (B, N) -> (B, N)."""
        if self.J is not None:
            out = torch.bmm(self.J, r.unsqueeze(-1)).squeeze(-1)
        else:
            k = torch.bmm(r.unsqueeze(1), self.V)  # (B, 1, R)
            out = torch.bmm(k, self.U.transpose(1, 2)).squeeze(1) / self.U.shape[1]
        if self.base is not None:
            out = out + r @ self.base.T
        return out


def _recurrent_input(r, U, V, J, base, inv_n):
    """W r_t for one step; returns (W r, V^T r or None) with r (B, N)."""
    if J is not None:
        out = torch.bmm(J, r.unsqueeze(-1)).squeeze(-1)
        k = None
    else:
        k = torch.bmm(r.unsqueeze(1), V).squeeze(1)  # (B, R)
        out = torch.bmm(k.unsqueeze(1), U.transpose(1, 2)).squeeze(1) * inv_n
    if base is not None:
        out = out + r @ base.T
    return out, k


class _Unroll(torch.autograd.Function):
    """Runs T steps of the rate RNN; returns rates r_0..r_{T-1} (B, T, N)."""

    @staticmethod
    def forward(ctx, x0, U, V, J, base, bias, noise, alpha):
        B, N = x0.shape
        T = noise.shape[1] + 1
        inv_n = 1.0 / U.shape[1] if U is not None else 1.0
        rates = x0.new_empty(B, T, N)
        ks = x0.new_empty(B, T - 1, U.shape[2]) if U is not None else None
        x = x0
        drive_bias = alpha * bias if bias is not None else None
        for t in range(T):
            r = torch.tanh(x)
            rates[:, t] = r
            if t == T - 1:
                break
            rec, k = _recurrent_input(r, U, V, J, base, inv_n)
            if ks is not None:
                ks[:, t] = k
            x = (1.0 - alpha) * x + alpha * rec + noise[:, t]
            if drive_bias is not None:
                x = x + drive_bias
        ctx.save_for_backward(rates, ks, U, V, J, base)
        ctx.alpha = alpha
        ctx.has_bias = bias is not None
        return rates

    @staticmethod
    def backward(ctx, grad_rates):
        rates, ks, U, V, J, base = ctx.saved_tensors
        alpha = ctx.alpha
        B, T, N = rates.shape
        inv_n = 1.0 / U.shape[1] if U is not None else 1.0
        # gx[:, t] = dL/dx_{t+1} for t = 0..T-2 (the states that received recurrent input)
        gx = rates.new_zeros(B, T - 1, N)
        g_next = rates.new_zeros(B, N)  # dL/dx_{t+1}
        for t in range(T - 1, -1, -1):
            r = rates[:, t]
            dr = grad_rates[:, t]
            if t < T - 1:
                # r_t feeds x_{t+1} through alpha W r_t
                if J is not None:
                    back = torch.bmm(g_next.unsqueeze(1), J).squeeze(1)
                else:
                    p = torch.bmm(g_next.unsqueeze(1), U)  # (B, 1, R)
                    back = torch.bmm(p, V.transpose(1, 2)).squeeze(1) * inv_n
                if base is not None:
                    back = back + g_next @ base
                dr = dr + alpha * back
                g = dr * (1.0 - r * r) + (1.0 - alpha) * g_next
            else:
                g = dr * (1.0 - r * r)
            if t > 0:
                gx[:, t - 1] = g
            g_next = g
        grad_x0 = g_next
        R = rates[:, :-1]  # (B, T-1, N): r_t that drove x_{t+1}
        gU = gV = gJ = gbase = gbias = None
        if J is not None:
            if ctx.needs_input_grad[3]:
                gJ = alpha * torch.bmm(gx.transpose(1, 2), R)  # (B, N, N)
        else:
            if ctx.needs_input_grad[1]:
                gU = (alpha * inv_n) * torch.bmm(gx.transpose(1, 2), ks)  # (B, N, R)
            if ctx.needs_input_grad[2]:
                P = torch.bmm(gx, U)  # (B, T-1, R): U^T g_{t+1}
                gV = (alpha * inv_n) * torch.bmm(R.transpose(1, 2), P)  # (B, N, R)
        if base is not None and ctx.needs_input_grad[4]:
            gbase = alpha * torch.einsum("btn,btm->nm", gx, R)
        if ctx.has_bias and ctx.needs_input_grad[5]:
            gbias = alpha * gx.sum(1)
        grad_noise = gx if ctx.needs_input_grad[6] else None
        return grad_x0, gU, gV, gJ, gbase, gbias, grad_noise, None


class RateRNN(nn.Module):
    """Autonomous noisy tanh rate RNN whose weights are supplied per trial.

    Args:
        dt: integration step in seconds.
        tau: time constant in seconds (alpha = dt / tau).
        noise_std: process-noise std per step during training (0 in eval and analyses).
    """

    def __init__(self, dt: float = 0.01, tau: float = 0.05, noise_std: float = 0.01):
        super().__init__()
        if not 0 < dt <= tau:
            raise ValueError(f"model.rnn: need 0 < dt <= tau, got dt={dt}, tau={tau}")
        self.dt, self.tau, self.noise_std = dt, tau, noise_std

    @property
    def alpha(self) -> float:
        return self.dt / self.tau

    def forward(self, weights: RecurrentWeights, x0: Tensor, n_steps: int,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Unroll from x0 (B, N) for n_steps frames; returns rates (B, n_steps, N)."""
        B, N = x0.shape
        sigma = self.noise_std if self.training else 0.0
        if sigma > 0:
            noise = torch.randn(B, n_steps - 1, N, generator=generator, device=x0.device, dtype=x0.dtype) * sigma
        else:
            noise = x0.new_zeros(B, n_steps - 1, N)
        return _Unroll.apply(x0, weights.U, weights.V, weights.J, weights.base, weights.bias, noise, self.alpha)

    def step(self, weights: RecurrentWeights, x: Tensor) -> Tensor:
        """One noise-free step x_t -> x_{t+1} (B, N); differentiable by ordinary autograd."""
        drive = weights.apply(torch.tanh(x))
        if weights.bias is not None:
            drive = drive + weights.bias
        return (1.0 - self.alpha) * x + self.alpha * drive


def unroll_reference(weights: RecurrentWeights, x0: Tensor, noise: Tensor, alpha: float) -> Tensor:
    """Plain autograd unroll (a per-step Python loop); the reference for tests and benchmarks."""
    x, out = x0, [torch.tanh(x0)]
    for t in range(noise.shape[1]):
        drive = weights.apply(out[-1])
        if weights.bias is not None:
            drive = drive + weights.bias
        x = (1 - alpha) * x + alpha * drive + noise[:, t]
        out.append(torch.tanh(x))
    return torch.stack(out, 1)
