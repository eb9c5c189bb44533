"""The student's training unroll: hand-written BPTT (``jedi_rnn.dynamics.bptt``) against plain
autograd through the same unroll (``jedi_rnn.dynamics.rate_rnn.unroll``) and against autograd
through that unroll with its update ``torch.compile``d, all measured in the same run.

Forward + backward of a mean-squared loss on the rates at the multifreq demo's sizes (batch 64,
N = 200 units, T = 200 steps, rank 5; float32), for the low-rank and the full-rank (per-trial J)
student. Calls of the three are interleaved so that they share the machine's load; each time is
the median over ``repeats``. Also checks that the gradients of every input agree.

``python -m experiments.bench.student_bptt --compile-unroll`` also times ``torch.compile`` of the
whole unroll (its compile time grows with T: minutes at T = 200 on a CPU).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from jedi_rnn.dynamics.bptt import bptt_unroll
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, rate_update, unroll

B, N, T, RANK, ALPHA = 64, 200, 200, 5, 0.2


def _problem(full_rank: bool, seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    if full_rank:
        params = {"J": 1.5 * torch.randn(B, N, N, generator=gen) / N ** 0.5}
    else:
        params = {"U": torch.randn(B, N, RANK, generator=gen), "V": 1.5 * torch.randn(B, N, RANK, generator=gen)}
    x0 = torch.randn(B, N, generator=gen)
    noise = 0.01 * torch.randn(B, T - 1, N, generator=gen)
    target = torch.rand(B, T, N, generator=gen) * 2 - 1
    return {k: v.requires_grad_() for k, v in params.items()}, x0.requires_grad_(), noise, target


def _plain(weights, x0, noise):
    return unroll(weights, x0, ALPHA, noise.shape[1], noise=noise, rates=True)


def _compiled_update(update):
    """``unroll``'s loop (rates) with its update replaced by a compiled one."""
    def run(weights, x0, noise):
        x, r = x0, torch.tanh(x0)
        out = [r]
        for t in range(noise.shape[1]):
            x = update(x, r, weights, ALPHA) + noise[:, t]
            r = torch.tanh(x)
            out.append(r)
        return torch.stack(out, 1)
    return run


def _train_step(unroll_fn, params, x0, noise, target):
    def step():
        for p in (*params.values(), x0):
            p.grad = None
        rates = unroll_fn(RecurrentWeights(**params), x0, noise)
        (rates - target).square().mean().backward()
        return {k: p.grad.clone() for k, p in (*params.items(), ("x0", x0))}
    return step


def _max_rel_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in a)


def _interleaved(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, calls interleaved, after one warm-up call each."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(full_rank: bool, repeats: int, compile_unroll: bool = False) -> dict:
    params, x0, noise, target = _problem(full_rank)
    fns = {"handwritten": _train_step(lambda w, x, n: bptt_unroll(w, x, n, ALPHA), params, x0, noise, target),
           "autograd": _train_step(_plain, params, x0, noise, target),
           "compiled_step": _train_step(_compiled_update(torch.compile(rate_update)), params, x0, noise, target)}
    out = {}
    t0 = time.perf_counter()
    grads = {k: fn() for k, fn in fns.items()}  # also the compile
    out["first_call_s"] = round(time.perf_counter() - t0, 1)
    if compile_unroll:
        fns["compiled_unroll"] = _train_step(torch.compile(_plain), params, x0, noise, target)
        t0 = time.perf_counter()
        grads["compiled_unroll"] = fns["compiled_unroll"]()
        out["compile_unroll_s"] = round(time.perf_counter() - t0, 1)
    t = _interleaved(fns, repeats)
    ref = t["autograd"]
    out.update({f"{k}_s": round(v, 4) for k, v in t.items()})
    out.update({f"{k}_vs_autograd": round(v / ref, 3) for k, v in t.items() if k != "autograd"})
    out["grad_max_rel_diff"] = f"{max(_max_rel_diff(g, grads['autograd']) for g in grads.values()):.1e}"
    return out


def run(repeats: int = 7, compile_unroll: bool = False) -> dict:
    return {"name": "student_bptt", "torch_threads": torch.get_num_threads(), "B": B, "N": N, "T": T, "rank": RANK,
            "lowrank": measure(False, repeats, compile_unroll), "fullrank": measure(True, repeats, compile_unroll),
            "target": "handwritten_vs_autograd < 1 (kept only if it wins)"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile-unroll", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.repeats, args.compile_unroll)))
