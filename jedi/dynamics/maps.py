"""Discrete-time maps over a batch of contexts, the common input of the fixed-point finder and the
Lyapunov spectrum.

A *map* is any callable ``F(x) -> x_next`` on a state tensor of shape (C, K, N): C contexts (e.g.
conditions, each with its own weights or constant input), K states per context, N units. States
must not interact: row (c, k) of the output depends only on row (c, k) of the input and on context
c. Maps may also provide analytic derivatives, used in place of autograd when present:

- ``value_and_vjp(x)``: (F(x), g -> DF(x)^T g), sharing work between the two;
- ``jac_matmul(x, Q)``: DF(x) Q for x (C, K, N), Q (C, K, N, k);
- ``jacobian(x)``: DF(x) as (C, K, N, N).

``TanhRNNMap`` is the noise-free step of the tanh rate RNN (``rate_rnn.rate_step``, the JEDI
student and teachers), ``x -> (1 - a) x + a (W tanh x + b)``, with W = U V^T / N (low rank, never
materialised in the step), a dense J, or either plus a shared base matrix.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, rate_step, rate_update

Map = Callable[[Tensor], Tensor]


class TanhRNNMap:
    """Noise-free Euler step of the tanh rate RNN, one weight set per context.

    Args:
        alpha: dt / tau.
        U, V: low-rank factors (C, N, R) with W = U V^T / N; or
        J: dense recurrent matrices (C, N, N);
        base: optional shared (N, N) matrix added to W;
        bias: optional (C, N) bias (or constant input drive W_in u per context).
    """

    def __init__(self, alpha: float, U: Optional[Tensor] = None, V: Optional[Tensor] = None,
                 J: Optional[Tensor] = None, base: Optional[Tensor] = None, bias: Optional[Tensor] = None):
        if (J is None) == (U is None or V is None):
            raise ValueError("TanhRNNMap: give either both low-rank factors U and V, or a dense J")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"TanhRNNMap: alpha = dt/tau must lie in (0, 1], got {alpha}")
        ref = J if J is not None else U
        if ref.dim() != 3:
            raise ValueError(f"TanhRNNMap: weights must be batched over contexts, got shape {tuple(ref.shape)}")
        if bias is not None and bias.shape != ref.shape[:2]:
            raise ValueError(f"TanhRNNMap: bias must be (C, N) = {tuple(ref.shape[:2])}, got {tuple(bias.shape)}")
        self.alpha = float(alpha)
        self.weights = RecurrentWeights(U=U, V=V, J=J, base=base, bias=bias)

    @classmethod
    def from_weights(cls, weights: RecurrentWeights, alpha: float) -> "TanhRNNMap":
        """Wrap the per-context weights emitted by a hypernetwork (detached)."""
        d = {k: (v.detach() if v is not None else None) for k, v in weights._asdict().items()}
        return cls(alpha, **d)

    # --- structure -------------------------------------------------------------------------
    U = property(lambda self: self.weights.U)
    V = property(lambda self: self.weights.V)
    J = property(lambda self: self.weights.J)
    base = property(lambda self: self.weights.base)
    bias = property(lambda self: self.weights.bias)

    @property
    def n_contexts(self) -> int:
        return (self.J if self.J is not None else self.U).shape[0]

    @property
    def n_units(self) -> int:
        return self.weights.n_units

    @property
    def is_pure_lowrank(self) -> bool:
        """True when W = U V^T / N exactly (no base matrix): fixed points lie in span(U) + b."""
        return self.U is not None and self.base is None

    def to(self, dtype: Optional[torch.dtype] = None, device=None) -> "TanhRNNMap":
        d = {k: (t.to(device=device, dtype=dtype) if t is not None else None) for k, t in self.weights._asdict().items()}
        return TanhRNNMap(self.alpha, **d)

    def subset(self, idx) -> "TanhRNNMap":
        """The map restricted to contexts ``idx`` (int, slice or index tensor)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        U, V, J, bias = (t[idx] if t is not None else None for t in (self.U, self.V, self.J, self.bias))
        return TanhRNNMap(self.alpha, U=U, V=V, J=J, base=self.base, bias=bias)

    def dense(self) -> Tensor:
        """W(c) as (C, N, N) (for analyses; cheap at N <= 200)."""
        return self.weights.dense()

    # --- the map and its derivatives ----------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        return rate_step(x, self.weights, self.alpha)

    def value_and_vjp(self, x: Tensor):
        """F(x) and g -> DF(x)^T g = (1-a) g + a diag(1 - tanh^2 x) W^T g, all (C, K, N)."""
        r = torch.tanh(x)
        d = 1.0 - r * r
        a = self.alpha
        return rate_update(x, r, self.weights, a), lambda g: (1.0 - a) * g + a * d * self.weights.apply_T(g)

    def jac_matmul(self, x: Tensor, Q: Tensor) -> Tensor:
        """DF(x) Q = (1-a) Q + a W diag(1 - tanh^2 x) Q for x (C, K, N), Q (C, K, N, k)."""
        C, K, N, k = Q.shape
        dQ = (1.0 - torch.tanh(x) ** 2).unsqueeze(-1) * Q
        # (C, K, N, k) -> (C, K*k, N) so W acts on every column at once
        cols = dQ.permute(0, 1, 3, 2).reshape(C, K * k, N)
        WdQ = self.weights.apply(cols).reshape(C, K, k, N).permute(0, 1, 3, 2)
        return (1.0 - self.alpha) * Q + self.alpha * WdQ

    def jacobian(self, x: Tensor) -> Tensor:
        """DF(x) = (1-a) I + a W diag(1 - tanh^2 x), (C, K, N) -> (C, K, N, N)."""
        d = 1.0 - torch.tanh(x) ** 2
        W = self.dense().to(x.dtype)
        eye = torch.eye(self.n_units, dtype=x.dtype, device=x.device)
        return (1.0 - self.alpha) * eye + self.alpha * W.unsqueeze(1) * d.unsqueeze(-2)


def map_value_and_vjp(F: Map, x: Tensor):
    """(F(x), g -> DF(x)^T g): analytic when F provides ``value_and_vjp``, else ``torch.func.vjp``."""
    if hasattr(F, "value_and_vjp"):
        return F.value_and_vjp(x)
    out, vjp_fn = torch.func.vjp(F, x)
    return out, lambda g: vjp_fn(g)[0]


def map_jac_matmul(F: Map, x: Tensor, Q: Tensor) -> Tensor:
    """DF(x) Q for x (C, K, N), Q (C, K, N, k): analytic if provided, else forward-mode
    ``torch.func.jvp`` vmapped over the k columns."""
    if hasattr(F, "jac_matmul"):
        return F.jac_matmul(x, Q)

    def column(q):  # q (C, K, N)
        return torch.func.jvp(F, (x,), (q,))[1]

    return torch.func.vmap(column, in_dims=-1, out_dims=-1)(Q)


def map_jacobian(F: Map, x: Tensor) -> Tensor:
    """DF(x) as (C, K, N, N) (rows = outputs): analytic if provided, else ``torch.func``."""
    if hasattr(F, "jacobian"):
        return F.jacobian(x)
    C, K, N = x.shape
    eye = torch.eye(N, dtype=x.dtype, device=x.device).expand(C, K, N, N)
    return map_jac_matmul(F, x, eye)
