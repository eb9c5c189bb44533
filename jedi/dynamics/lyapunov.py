"""Lyapunov spectrum of a map by the QR (Benettin) method, batched over contexts.

From x_0 the noise-free map runs ``burn_in`` steps (the tangent basis Q is carried along so it is
aligned when counting starts; those growth factors are discarded), then for K = ``n_steps`` steps

    x_{t+1} = F(x_t),    Q_{t+1} R_{t+1} = DF(x_t) Q_t        (Q: N x k orthonormal),

and lambda_i = (1 / (K dt)) sum_t log|R_{t,ii}| in 1/s (per step: without the 1/dt). DF Q uses the
map's analytic ``jac_matmul`` when it has one (for the low-rank tanh RNN O(N R k) per step),
forward-mode autodiff otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from jedi_rnn.dynamics.maps import Map, TanhRNNMap, map_jac_matmul


@dataclass
class LyapunovResult:
    """exponents (C, k) in 1/s and per_step (C, k) in nats per step, both sorted descending;
    log_growth (C, K, k) the log|R_ii| of every counted step (columns in QR order); x_final (C, N)."""

    exponents: Tensor
    per_step: Tensor
    log_growth: Tensor
    x_final: Tensor
    dt: float

    def running(self) -> Tensor:
        """Running estimate (C, K, k) of the exponents (1/s) after each counted step (QR order)."""
        steps = torch.arange(1, self.log_growth.shape[1] + 1, dtype=self.log_growth.dtype)
        return self.log_growth.cumsum(1) / (steps[None, :, None] * self.dt)


def lyapunov_spectrum(F: Map, x0: Tensor, dt: float, n_exponents: int = 10, burn_in: int = 500,
                      n_steps: int = 2000, dtype: torch.dtype = torch.float64,
                      generator: Optional[torch.Generator] = None) -> LyapunovResult:
    """Top ``n_exponents`` Lyapunov exponents of F from x0 (C, N) for every context.

    The initial tangent basis is one random orthonormal N x k frame (from ``generator``, seed 0 by
    default) shared by all contexts, so a context gives the same result alone or in a batch; the
    result does not depend on the frame once burn-in has aligned it.
    """
    if x0.dim() != 2:
        raise ValueError(f"lyapunov_spectrum: x0 must be (C, N), got {tuple(x0.shape)}")
    if dt <= 0 or n_steps < 1 or burn_in < 0:
        raise ValueError(f"lyapunov_spectrum: need dt > 0, n_steps >= 1, burn_in >= 0; got {dt}, {n_steps}, {burn_in}")
    C, N = x0.shape
    k = min(n_exponents, N)
    if isinstance(F, TanhRNNMap):
        F = F.to(dtype=dtype, device=x0.device)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x = x0.detach().to(dtype).unsqueeze(1)  # (C, 1, N): the maps work on (C, K, N)
    Q, _ = torch.linalg.qr(torch.randn(N, k, generator=gen, dtype=dtype))  # one frame shared by all contexts
    Q = Q.to(x.device).expand(C, N, k)
    logs = []
    with torch.no_grad():
        for t in range(burn_in + n_steps):
            Z = map_jac_matmul(F, x, Q.unsqueeze(1)).squeeze(1)  # DF(x_t) Q_t, (C, N, k)
            Q, R = torch.linalg.qr(Z)
            x = F(x)
            if t >= burn_in:
                logs.append(torch.diagonal(R, dim1=-2, dim2=-1).abs().log())
    log_growth = torch.stack(logs, 1)  # (C, K, k)
    per_step = log_growth.mean(1).sort(dim=-1, descending=True).values
    return LyapunovResult(exponents=per_step / dt, per_step=per_step, log_growth=log_growth.cpu(),
                          x_final=x.squeeze(1), dt=dt)
