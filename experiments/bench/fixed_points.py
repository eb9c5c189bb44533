"""Batched fixed-point finder vs the same algorithm run one context at a time (same run, same device).

64 contexts x 256 initial states of a generated rank-2 tanh RNN (N = 64, alpha = 0.2) whose
contexts differ in their two gains (3 to 5 converged fixed points each). The finder runs with its defaults
(float64, max_iters 5000, low-rank fast path) on CUDA when available, else CPU. Reports the median
over ``repeats`` of each, the speed-up, and whether both found the same fixed points (same count per
context, each point matched within 1e-3). Target: speedup >= 10, on a GPU: there a sequential
solve is bound by kernel launches. On a CPU both are bound by arithmetic and batching gains nothing
(measured 0.7-0.9x with 1 thread); a CPU run of this file takes about 2.5 minutes per repeat.
"""
from __future__ import annotations

import statistics
import time

import torch

from jedi_rnn.dynamics.fixed_points import FinderOptions, find_fixed_points, sample_initial_states
from jedi_rnn.dynamics.maps import TanhRNNMap
from jedi_rnn.dynamics.rate_rnn import unroll

C, K, N, R, ALPHA = 64, 256, 64, 2, 0.2
FIXED_Q = 1e-10  # points compared: q below this (unconverged near-duplicates of weakly attracting saddles excluded)


def make_problem(device: torch.device, seed: int = 0) -> tuple:
    """The map and initial states (trajectory states + N(0, 0.1^2) noise), seeded.

    V = U diag(g1, g2) + 0.1 noise with per-context gains g1 in [1.3, 2.5], g2 in [1.9, 0.7]: each
    context has a few isolated fixed points (the origin and pairs along the strong directions).
    """
    gen = torch.Generator().manual_seed(seed)
    U = torch.randn(C, N, R, generator=gen)
    gains = torch.stack([torch.linspace(1.3, 2.5, C), torch.linspace(0.7, 1.9, C).flip(0)], -1)  # (C, R)
    V = U * gains[:, None, :] + 0.1 * torch.randn(C, N, R, generator=gen)
    F = TanhRNNMap(ALPHA, U=U.to(device), V=V.to(device))
    traj = unroll(F.weights, 2.0 * torch.randn(C, 8, N, generator=gen).to(device), ALPHA, 49)  # (C, 8, 50, N)
    x0 = sample_initial_states(traj.flatten(1, 2).cpu(), K, 0.1, gen).to(device)
    return F, x0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> tuple:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def same_fixed_points(a: list, b: list, tol: float = 1e-3) -> bool:
    """Per context, the points with q <= FIXED_Q match one-to-one within tol."""
    for ca, cb in zip(a, b):
        xa, xb = ca.xstar[ca.q <= FIXED_Q], cb.xstar[cb.q <= FIXED_Q]
        if len(xa) != len(xb):
            return False
        if len(xa) and (torch.cdist(xa, xb).min(1).values.max() > tol or torch.cdist(xb, xa).min(1).values.max() > tol):
            return False
    return True


def run(repeats: int = 3) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    F, x0 = make_problem(device)
    opts = FinderOptions()

    def batched():
        return find_fixed_points(F, x0, opts).contexts

    def sequential():
        return [find_fixed_points(F.subset(c), x0[c:c + 1], opts).contexts[0] for c in range(C)]

    find_fixed_points(F.subset(0), x0[:1, :8], FinderOptions(max_iters=10))  # warm-up (CUDA context, kernels)
    t_batched, t_seq = [], []
    for _ in range(repeats):
        t, res_b = _timed(batched, device)
        t_batched.append(t)
        t, res_s = _timed(sequential, device)
        t_seq.append(t)
    tb, ts = statistics.median(t_batched), statistics.median(t_seq)
    counts = [int((c.q <= FIXED_Q).sum()) for c in res_b]
    return {"name": "fixed_points_batched_vs_sequential", "device": str(device),
            "torch_threads": torch.get_num_threads(), "contexts": C, "inits": K, "units": N, "rank": R,
            "fixed_points_per_context": f"{min(counts)}-{max(counts)}",
            "batched_s": round(tb, 3), "sequential_s": round(ts, 3), "speedup": round(ts / tb, 2),
            "same_fixed_points": same_fixed_points(res_b, res_s), "target": "speedup >= 10"}


if __name__ == "__main__":
    print(run())
