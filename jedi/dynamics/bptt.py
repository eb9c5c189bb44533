"""The student's training unroll as one autograd node with a hand-written backward pass.

The forward pass is ``rate_rnn.unroll`` (its rates) run without recording a graph; the backward
loop carries g_t = dL/dx_t back through the update (g_t = (dL/dr_t + alpha W^T g_{t+1}) (1 - r_t^2)
+ (1 - alpha) g_{t+1}), so the parameter gradients become single batched contractions over time
(dU = alpha/N G^T (R V), dV = alpha/N R^T (G U), dJ = alpha G^T R) instead of T small accumulations.
``experiments/bench/student_bptt.py`` measures it against plain autograd through the same unroll.
"""
from __future__ import annotations

import torch
from torch import Tensor

from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, unroll


class _RateUnroll(torch.autograd.Function):
    """T steps of the rate RNN from x0 (B, N) with noise (B, T-1, N); returns rates r_0..r_{T-1} (B, T, N)."""

    @staticmethod
    def forward(ctx, x0, U, V, J, base, bias, noise, alpha):
        weights = RecurrentWeights(U=U, V=V, J=J, base=base, bias=bias)
        rates = unroll(weights, x0, alpha, noise.shape[1], noise=noise, rates=True)  # (B, T, N)
        ctx.save_for_backward(rates, U, V, J, base)
        ctx.alpha = alpha
        ctx.has_bias = bias is not None
        return rates

    @staticmethod
    def backward(ctx, grad_rates):
        rates, U, V, J, base = ctx.saved_tensors
        weights = RecurrentWeights(U=U, V=V, J=J, base=base)
        alpha = ctx.alpha
        B, T, N = rates.shape
        # gx[:, t] = dL/dx_{t+1} for t = 0..T-2 (the states that received recurrent input)
        gx = rates.new_zeros(B, T - 1, N)
        g_next = rates.new_zeros(B, N)  # dL/dx_{t+1}
        for t in range(T - 1, -1, -1):
            r = rates[:, t]
            dr = grad_rates[:, t]
            if t < T - 1:  # r_t feeds x_{t+1} through alpha W r_t
                g = (dr + alpha * weights.apply_T(g_next)) * (1.0 - r * r) + (1.0 - alpha) * g_next
            else:
                g = dr * (1.0 - r * r)
            if t > 0:
                gx[:, t - 1] = g
            g_next = g
        R = rates[:, :-1]  # (B, T-1, N): r_t that drove x_{t+1}
        gU = gV = gJ = gbase = gbias = None
        if J is not None and ctx.needs_input_grad[3]:
            gJ = alpha * torch.bmm(gx.transpose(1, 2), R)  # (B, N, N)
        if U is not None and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            scale = alpha / N
            if ctx.needs_input_grad[1]:
                gU = scale * torch.bmm(gx.transpose(1, 2), torch.bmm(R, V))  # (B, N, R): G^T (R V)
            if ctx.needs_input_grad[2]:
                gV = scale * torch.bmm(R.transpose(1, 2), torch.bmm(gx, U))  # (B, N, R): R^T (G U)
        if base is not None and ctx.needs_input_grad[4]:
            gbase = alpha * torch.einsum("btn,btm->nm", gx, R)
        if ctx.has_bias and ctx.needs_input_grad[5]:
            gbias = alpha * gx.sum(1)
        grad_noise = gx if ctx.needs_input_grad[6] else None
        return g_next, gU, gV, gJ, gbase, gbias, grad_noise, None


def bptt_unroll(weights: RecurrentWeights, x0: Tensor, noise: Tensor, alpha: float) -> Tensor:
    """Rates r_0..r_{T-1} (B, T, N) of the noisy unroll from x0 (B, N), noise (B, T-1, N), with the
    hand-written backward pass; equal to ``unroll(weights, x0, alpha, T - 1, noise=noise, rates=True)``."""
    return _RateUnroll.apply(x0, weights.U, weights.V, weights.J, weights.base, weights.bias, noise, alpha)
