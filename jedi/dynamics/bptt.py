"""The student's training unroll as one autograd node with a hand-written backward pass.

The forward pass is ``rate_rnn.unroll`` (its rates) run without recording a graph; the backward
loop (fused multiply-adds of ``rate_rnn.StepOperator``) carries g_t = dL/dx_t back through the
update (g_t = (dL/dr_t + alpha W^T g_{t+1}) (1 - r_t^2) + (1 - alpha) g_{t+1}), so the parameter
gradients become single batched contractions over time (dU = alpha/N G^T (R V), dV = alpha/N R^T
(G U), dJ = alpha G^T R) instead of T small accumulations.
``experiments/bench/student_bptt.py`` measures it against plain autograd through the same unroll.
"""
from __future__ import annotations

import torch
from torch import Tensor

from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, StepOperator, unroll


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
        op = StepOperator(RecurrentWeights(U=U, V=V, J=J, base=base), ctx.alpha)
        alpha = ctx.alpha
        B, T, N = rates.shape
        d = 1.0 - rates * rates  # (B, T, N): tanh'(x_t)
        # gx[:, t] = dL/dx_{t+1} for t = 0..T-2 (the states that received recurrent input)
        gx = rates.new_empty(B, T - 1, N)
        g = grad_rates[:, -1:] * d[:, -1:]  # dL/dx_{T-1}, (B, 1, N)
        for t in range(T - 2, -1, -1):
            gx[:, t:t + 1] = g
            # dL/dx_t = (dL/dr_t + alpha W^T g_{t+1}) tanh'(x_t) + (1 - alpha) g_{t+1}
            g = torch.addcmul(g * (1.0 - alpha), op.add_T(grad_rates[:, t:t + 1], g), d[:, t:t + 1])
        g_next = g.squeeze(1)  # dL/dx_0
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
