"""Batched fixed-point finder with the semantics of fixed-point-finder (Golub & Sussillo).

For a map F over a (C contexts, K initial states, N units) state tensor (see ``maps``), every state
descends q(x) = 1/2 ||F(x) - x||^2 with Adam (one learning rate per context, decayed on plateau of
that context's mean q by ``lr_factor`` after ``lr_patience`` non-improving iterations). A state
stops (and is masked) when q < tol_q or |dq| < tol_dq * lr. Then, per context: optional re-run of
q outliers, removal of points with q > max_q (off by default), de-duplication within tol_unique
keeping the lowest q, exclusion of distance outliers (>= outlier_distance_scale x the mean distance
of the initial states to their centroid), Jacobians (analytic for ``TanhRNNMap``, ``torch.func``
otherwise), eigenvalues sorted by |lambda| descending, stable iff |lambda_max| < 1.

Low-rank fast path (``TanhRNNMap`` with W = U V^T / N, no base matrix): every fixed point satisfies
x* = U kappa + b, so the search runs in the R-dimensional orthonormal coordinates y of span(U)
(x = Q_U y + b, with q identical to the full-space q), and the Jacobian spectrum is
(1 - a) + a eig(V^T diag(1 - tanh^2 x*) U / N) plus N - R eigenvalues equal to 1 - a.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from jedi_rnn.dynamics.maps import Map, TanhRNNMap, map_jacobian, map_value_and_vjp

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class FinderOptions:
    """Finder settings; defaults follow fixed-point-finder except lr_init (1e-2) and dtype (float64)."""

    tol_q: float = 1e-12
    tol_dq: float = 1e-20
    max_iters: int = 5000
    lr_init: float = 1e-2
    lr_factor: float = 0.95
    lr_patience: int = 5
    lr_threshold: float = 0.0  # relative decrease of the mean q that counts as progress (0: any decrease)
    adam_betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    rerun_q_outliers: bool = False
    outlier_q_scale: float = 10.0
    max_q: Optional[float] = None  # None keeps slow points too, as fixed-point-finder does
    tol_unique: float = 1e-3
    max_n_unique: Optional[int] = None
    exclude_distance_outliers: bool = True
    outlier_distance_scale: float = 10.0
    compute_jacobians: bool = True
    dtype: str = "float64"

    def __post_init__(self):
        if self.dtype not in _DTYPES:
            raise ValueError(f"fixed points: dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not 0.0 < self.lr_factor <= 1.0:
            raise ValueError(f"fixed points: lr_factor must lie in (0, 1], got {self.lr_factor}")
        if self.lr_patience < 0 or self.max_iters < 1:
            raise ValueError(f"fixed points: need lr_patience >= 0 and max_iters >= 1, got "
                             f"{self.lr_patience}, {self.max_iters}")
        self.adam_betas = tuple(self.adam_betas)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@dataclass
class ContextFixedPoints:
    """The unique fixed points of one context.

    xstar (n, N); q (n,); init_index (n,) the initial state each came from; eigenvalues (n, N)
    complex, each row sorted by |lambda| descending (None if Jacobians were skipped); stable (n,).
    """

    xstar: Tensor
    q: Tensor
    init_index: Tensor
    eigenvalues: Optional[Tensor] = None
    stable: Optional[Tensor] = None

    @property
    def n(self) -> int:
        return self.xstar.shape[0]


@dataclass
class FixedPointResult:
    """Per-context fixed points plus the raw per-initial-state results, all (C, K, ...)."""

    contexts: list
    x_init: Tensor
    x_final: Tensor
    q_final: Tensor
    n_iters: Tensor
    converged: Tensor
    lr_final: Tensor
    fast_path: bool = False

    def padded(self) -> dict:
        """Per-context arrays padded with NaN to the largest count, for ``np.savez``."""
        C, N = len(self.contexts), self.x_init.shape[-1]
        M = max([c.n for c in self.contexts] + [1])
        xs = np.full((C, M, N), np.nan)
        qs = np.full((C, M), np.nan)
        stable = np.zeros((C, M), bool)
        eig = np.full((C, M, N), np.nan + 0j, dtype=np.complex128)
        for i, c in enumerate(self.contexts):
            xs[i, :c.n] = c.xstar.cpu().numpy()
            qs[i, :c.n] = c.q.cpu().numpy()
            if c.eigenvalues is not None:
                eig[i, :c.n] = c.eigenvalues.cpu().numpy()
                stable[i, :c.n] = c.stable.cpu().numpy()
        return {"xstar": xs, "q": qs, "stable": stable, "eigenvalues": eig,
                "n_fixed_points": np.array([c.n for c in self.contexts])}


# --------------------------------------------------------------------------------------------
# Initial states
# --------------------------------------------------------------------------------------------
def sample_initial_states(trajectories: Tensor, n_inits: int, noise_std: float = 0.1,
                          generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw n_inits states per context from its trajectories and add N(0, noise_std^2) noise.

    trajectories: (C, M, N) states (e.g. all time points of a context's rollouts, flattened);
    returns (C, n_inits, N). Draws with replacement, uniformly over the M states.
    """
    if trajectories.dim() != 3:
        raise ValueError(f"sample_initial_states: trajectories must be (C, M, N), got {tuple(trajectories.shape)}")
    C, M, N = trajectories.shape
    idx = torch.randint(M, (C, n_inits), generator=generator).to(trajectories.device)
    x = torch.gather(trajectories, 1, idx.unsqueeze(-1).expand(C, n_inits, N))
    noise = torch.randn(C, n_inits, N, generator=generator, dtype=trajectories.dtype).to(trajectories.device)
    return x + noise_std * noise


# --------------------------------------------------------------------------------------------
# The joint Adam minimisation
# --------------------------------------------------------------------------------------------
def _q_and_grad(F: Map, x: Tensor) -> tuple:
    fx, vjp = map_value_and_vjp(F, x)
    dx = fx - x
    q = 0.5 * (dx * dx).sum(-1)
    # grad q = (DF - I)^T (F(x) - x)
    return q, vjp(dx) - dx


def minimize_q(F: Map, x0: Tensor, opts: FinderOptions, active: Optional[Tensor] = None,
               compact_every: int = 25) -> dict:
    """Descend q for every state of x0 (C, K, D) jointly; only states with ``active`` (C, K) move.

    Every ``compact_every`` iterations, once at most half of the held slots are still active, the
    work tensors shrink to the active states (padded per context with finished ones), and, if F has
    ``subset``, to the contexts that still have active states. The plateau rule always uses the mean
    q over all K states of a context, so results do not depend on compaction or on the other
    contexts. Whether any state is still active is checked at the same points (no per-iteration
    host sync on a GPU; finished states stay frozen meanwhile). Returns dict with x (C, K, D), q (C, K), n_iters (C, K), converged (C, K) (stopped
    by a tolerance), lr (C,).
    """
    C, K, D = x0.shape
    dev, dt = x0.device, x0.dtype
    x_out, q_out = x0.clone(), torch.full((C, K), float("inf"), dtype=dt, device=dev)
    iters_out = torch.zeros(C, K, dtype=torch.long, device=dev)
    conv_out = torch.zeros(C, K, dtype=torch.bool, device=dev)
    lr_out = torch.full((C,), opts.lr_init, dtype=dt, device=dev)
    # work tensors over rows (contexts ctx[i]) and slots (slot[i, j] = state index held there)
    ctx = torch.arange(C, device=dev)
    slot = torch.arange(K, device=dev).expand(C, K).clone()
    x = x0.clone()
    act = torch.ones(C, K, dtype=torch.bool, device=dev) if active is None else active.clone()
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    n_iters = torch.zeros(C, K, dtype=torch.long, device=dev)
    conv = torch.zeros(C, K, dtype=torch.bool, device=dev)
    q_prev = torch.full((C, K), float("inf"), dtype=dt, device=dev)
    lr = lr_out.clone()
    best = torch.full((C,), float("inf"), dtype=dt, device=dev)
    bad = torch.zeros(C, dtype=torch.long, device=dev)
    frozen_q = torch.zeros(C, dtype=dt, device=dev)  # summed q of the states that no longer move
    b1, b2 = opts.adam_betas
    zero = torch.zeros((), dtype=dt, device=dev)

    def write_back(q):
        rows = ctx[:, None].expand_as(slot)
        x_out[rows, slot] = x
        q_out[rows, slot] = q
        iters_out[rows, slot] = n_iters
        conv_out[rows, slot] = conv
        lr_out[ctx] = lr

    with torch.no_grad():
        for it in range(opts.max_iters + 1):
            q, grad = _q_and_grad(F, x)
            if it == 0:
                frozen_q = torch.where(act, zero, q).sum(1)
            done = act & ((q < opts.tol_q) | ((q - q_prev).abs() < opts.tol_dq * lr[:, None]))
            conv |= done
            frozen_q = frozen_q + torch.where(done, q, zero).sum(1)
            act &= ~done
            if it == opts.max_iters:
                break
            # learning-rate decay on plateau of each context's mean q (over all K states)
            mean_q = (torch.where(act, q, zero).sum(1) + frozen_q) / K
            improved = mean_q < best * (1.0 - opts.lr_threshold)
            best = torch.where(improved, mean_q, best)
            bad = torch.where(improved, torch.zeros_like(bad), bad + 1)
            decay = bad > opts.lr_patience
            lr = torch.where(decay, lr * opts.lr_factor, lr)
            bad = torch.where(decay, torch.zeros_like(bad), bad)
            # Adam step on the active states. A masked state never moves again in this call, so its
            # moments may keep running and every active state shares the bias-correction step it + 1.
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            step_size = (lr[:, None] * act) / (1 - b1 ** (it + 1))  # (rows, slots)
            denom = (v / (1 - b2 ** (it + 1))).sqrt_().add_(opts.adam_eps)
            x = x - step_size.unsqueeze(-1) * m / denom
            n_iters += act
            q_prev = q
            if (it + 1) % compact_every:
                continue
            counts = act.sum(1)
            width = int(counts.max())  # the only host sync: every compact_every iterations
            if width == 0:
                break
            rows = len(ctx)
            live = torch.nonzero(counts > 0).flatten() if hasattr(F, "subset") else torch.arange(rows, device=dev)
            if width <= x.shape[1] // 2 or len(live) <= rows // 2:
                write_back(q)
                keep = torch.argsort((~act[live]).to(torch.uint8), dim=1, stable=True)[:, :width]  # active first
                gx = keep.unsqueeze(-1).expand(-1, -1, D)
                x, m, v = (torch.gather(t[live], 1, gx) for t in (x, m, v))
                slot, act, conv, n_iters, q_prev = (torch.gather(t[live], 1, keep)
                                                    for t in (slot, act, conv, n_iters, q_prev))
                ctx, lr, best, bad, frozen_q = (t[live] for t in (ctx, lr, best, bad, frozen_q))
                if len(live) < rows:
                    F = F.subset(live)
        write_back(q)
    return {"x": x_out, "q": q_out, "n_iters": iters_out, "converged": conv_out, "lr": lr_out}


def _rerun_q_outliers(F: Map, run: dict, opts: FinderOptions) -> dict:
    """Continue (fresh Adam state) the states whose q exceeds outlier_q_scale x their context's median."""
    q = run["q"]
    outliers = q > opts.outlier_q_scale * q.median(dim=1, keepdim=True).values
    if not bool(outliers.any()):
        return run
    again = minimize_q(F, run["x"], opts, active=outliers)
    return {"x": again["x"], "q": again["q"], "n_iters": run["n_iters"] + again["n_iters"],
            "converged": torch.where(outliers, again["converged"], run["converged"]), "lr": again["lr"]}


# --------------------------------------------------------------------------------------------
# Post-processing (batched over contexts)
# --------------------------------------------------------------------------------------------
def select_unique(x: Tensor, q: Tensor, keep: Tensor, tol_unique: float) -> Tensor:
    """Greedy de-duplication per context: visit points by increasing q; a point within tol_unique
    (Euclidean) of an already kept point is dropped. x (C, K, N), q, keep (C, K) -> mask (C, K)."""
    C, K, _ = x.shape
    close = torch.cdist(x, x) <= tol_unique  # (C, K, K)
    order_q = torch.where(keep, q, torch.full_like(q, float("inf")))
    order = torch.argsort(order_q, dim=1, stable=True)
    alive = torch.gather(keep, 1, order)  # in q order
    close = torch.gather(torch.gather(close, 1, order.unsqueeze(-1).expand(C, K, K)), 2,
                         order.unsqueeze(1).expand(C, K, K))
    unique_sorted = torch.zeros_like(alive)
    rows = torch.arange(C, device=x.device)
    while bool(alive.any()):
        has = alive.any(1)
        first = alive.to(torch.uint8).argmax(1)  # lowest-q alive point per context
        unique_sorted[rows[has], first[has]] = True
        alive = alive & ~(close[rows, first] & has[:, None])
    unique = torch.zeros_like(unique_sorted)
    unique.scatter_(1, order, unique_sorted)
    return unique


def _limit_count(q: Tensor, mask: Tensor, max_n: Optional[int]) -> Tensor:
    if max_n is None:
        return mask
    rank = torch.argsort(torch.argsort(torch.where(mask, q, torch.full_like(q, float("inf"))), 1), 1)
    return mask & (rank < max_n)


def _distance_inliers(x: Tensor, x_init: Tensor, scale: float) -> Tensor:
    centroid = x_init.mean(1, keepdim=True)  # (C, 1, N)
    spread = (x_init - centroid).norm(dim=-1).mean(1, keepdim=True)  # (C, 1)
    return (x - centroid).norm(dim=-1) < scale * spread


def _sorted_by_modulus(eig: Tensor) -> Tensor:
    order = torch.argsort(eig.abs(), dim=-1, descending=True, stable=True)
    return torch.gather(eig, -1, order)


def _gather_padded(x: Tensor, mask: Tensor) -> tuple:
    """Selected rows per context, padded by repeating the first selected one (or zeros):
    x (C, K, N), mask (C, K) -> (C, M, N), index (C, M), counts (C,)."""
    counts = mask.sum(1)
    M = max(int(counts.max()), 1)
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :M]  # selected first
    pos = torch.arange(M, device=x.device).expand(mask.shape[0], M)
    idx = torch.where(pos < counts[:, None], order, order[:, :1])
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])), idx, counts


def _full_space_eigenvalues(F: Map, xs: Tensor, max_elems: int = 2 ** 24) -> Tensor:
    """Sorted Jacobian eigenvalues at xs (C, M, N) -> (C, M, N), chunked over contexts when F
    supports ``subset``."""
    C, M, N = xs.shape
    chunk = max(1, max_elems // (M * N * N)) if hasattr(F, "subset") else C
    out = []
    for s in range(0, C, chunk):
        Fs = F.subset(slice(s, s + chunk)) if chunk < C else F
        out.append(_sorted_by_modulus(torch.linalg.eigvals(map_jacobian(Fs, xs[s:s + chunk]))))
    return torch.cat(out, 0)


def _lowrank_eigenvalues(F: TanhRNNMap, xs: Tensor) -> Tensor:
    """(1 - a) + a eig(V^T diag(1 - tanh^2 x) U / N), then N - R copies of 1 - a; xs (C, M, N)."""
    C, M, N = xs.shape
    R = F.U.shape[-1]
    d = 1.0 - torch.tanh(xs) ** 2
    small = (F.V.transpose(1, 2).unsqueeze(1) * d.unsqueeze(-2)) @ F.U.unsqueeze(1) / N  # (C, M, R, R)
    mu = torch.linalg.eigvals(small)
    rest = torch.full((C, M, N - R), 1.0 - F.alpha, dtype=mu.dtype, device=mu.device)
    return _sorted_by_modulus(torch.cat([(1.0 - F.alpha) + F.alpha * mu, rest], -1))


def _postprocess(F: Map, x_init: Tensor, x: Tensor, q: Tensor, opts: FinderOptions, lowrank: bool) -> list:
    keep = torch.isfinite(q) & torch.isfinite(x).all(-1)
    if opts.max_q is not None:
        keep &= q <= opts.max_q
    mask = select_unique(x, q, keep, opts.tol_unique)
    mask = _limit_count(q, mask, opts.max_n_unique)
    if opts.exclude_distance_outliers:
        mask &= _distance_inliers(x, x_init, opts.outlier_distance_scale)
    xs, idx, counts = _gather_padded(x, mask)
    qs = torch.gather(q, 1, idx)
    eig = None
    if opts.compute_jacobians:
        eig = _lowrank_eigenvalues(F, xs) if lowrank else _full_space_eigenvalues(F, xs)
    contexts = []
    for c in range(x.shape[0]):
        n = int(counts[c])
        e = eig[c, :n] if eig is not None else None
        contexts.append(ContextFixedPoints(
            xstar=xs[c, :n], q=qs[c, :n], init_index=idx[c, :n], eigenvalues=e,
            stable=(e.abs()[:, 0] < 1.0) if e is not None else None))
    return contexts


# --------------------------------------------------------------------------------------------
# Low-rank reduced map
# --------------------------------------------------------------------------------------------
class _ReducedLowRankMap:
    """The tanh RNN restricted to span(U) + b in orthonormal coordinates y (x = Q y + b, U = Q R):
    y -> (1 - a) y + a R V^T tanh(Q y + b) / N, states (C, K, R_rank)."""

    def __init__(self, F: TanhRNNMap):
        self.F = F
        self.Q, self.R = torch.linalg.qr(F.U)  # (C, N, R), (C, R, R)
        self.RVt = self.R @ F.V.transpose(1, 2) / F.n_units  # (C, R, N)

    @property
    def n_contexts(self) -> int:
        return self.Q.shape[0]

    def subset(self, idx) -> "_ReducedLowRankMap":
        """The reduced map of contexts ``idx`` (an index tensor), reusing the factorisation."""
        out = object.__new__(_ReducedLowRankMap)
        out.F, out.Q, out.R, out.RVt = self.F.subset(idx), self.Q[idx], self.R[idx], self.RVt[idx]
        return out

    def lift(self, y: Tensor) -> Tensor:
        x = y @ self.Q.transpose(1, 2)
        return x + self.F.bias.unsqueeze(1) if self.F.bias is not None else x

    def project(self, x: Tensor) -> Tensor:
        if self.F.bias is not None:
            x = x - self.F.bias.unsqueeze(1)
        return x @ self.Q

    def __call__(self, y: Tensor) -> Tensor:
        a = self.F.alpha
        return (1.0 - a) * y + a * torch.tanh(self.lift(y)) @ self.RVt.transpose(1, 2)

    def value_and_vjp(self, y: Tensor):
        a = self.F.alpha
        r = torch.tanh(self.lift(y))
        d = 1.0 - r * r
        fy = (1.0 - a) * y + a * r @ self.RVt.transpose(1, 2)
        return fy, lambda g: (1.0 - a) * g + a * ((g @ self.RVt) * d) @ self.Q


# --------------------------------------------------------------------------------------------
# Public entry
# --------------------------------------------------------------------------------------------
def find_fixed_points(F: Map, x_init: Tensor, options: Optional[FinderOptions] = None,
                      fast_path: bool = True) -> FixedPointResult:
    """Find the fixed points of F for every context from initial states x_init (C, K, N).

    ``F`` is any map on (C, K, N) (see ``jedi_rnn.dynamics.maps``). If F is a pure low-rank
    ``TanhRNNMap`` and ``fast_path`` is set, the search runs in span(U) (see module docstring).
    ``TanhRNNMap`` inputs are cast to ``options.dtype``; other maps must accept that dtype.
    """
    opts = options or FinderOptions()
    if x_init.dim() != 3:
        raise ValueError(f"find_fixed_points: x_init must be (C, K, N), got {tuple(x_init.shape)}")
    dtype = opts.torch_dtype
    x_init = x_init.detach().to(dtype)
    if isinstance(F, TanhRNNMap):
        F = F.to(dtype=dtype, device=x_init.device)
        if F.n_contexts != x_init.shape[0] or F.n_units != x_init.shape[2]:
            raise ValueError(f"find_fixed_points: map has {F.n_contexts} contexts x {F.n_units} units, "
                             f"x_init is {tuple(x_init.shape)}")
    lowrank = fast_path and isinstance(F, TanhRNNMap) and F.is_pure_lowrank
    if lowrank:
        G = _ReducedLowRankMap(F)
        run = minimize_q(G, G.project(x_init), opts)
        if opts.rerun_q_outliers:
            run = _rerun_q_outliers(G, run, opts)
        x = G.lift(run["x"])
        dx = F(x) - x
        q = 0.5 * (dx * dx).sum(-1)  # the full-space q (equal to the reduced one up to rounding)
    else:
        run = minimize_q(F, x_init, opts)
        if opts.rerun_q_outliers:
            run = _rerun_q_outliers(F, run, opts)
        x, q = run["x"], run["q"]
    with torch.no_grad():
        contexts = _postprocess(F, x_init, x, q, opts, lowrank)
    return FixedPointResult(contexts=contexts, x_init=x_init, x_final=x, q_final=q, n_iters=run["n_iters"],
                            converged=run["converged"], lr_final=run["lr"], fast_path=lowrank)
