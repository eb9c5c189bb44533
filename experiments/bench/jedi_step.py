"""JEDI train step (forward + backward, batch 64, N=200, T=150) as a ratio to torch.nn.RNN (tanh,
same batch, size and T), both measured in the same run: low-rank (rank 5) and full-rank per-trial J."""
from __future__ import annotations

import torch

from experiments.bench.timing import median_time
from jedi_rnn.models.hypernet import FullRankHypernet, LowRankHypernet
from jedi_rnn.models.rnn import RateRNN

B, N, T, RANK, D = 64, 200, 150, 5, 8


def _jedi_step(hypernet, rnn, c, x0, target):
    def step():
        hypernet.zero_grad(set_to_none=True)
        rates = rnn(hypernet(c), x0, T)
        (rates - target).square().mean().backward()
    return step


def run(repeats: int = 7) -> dict:
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(B, T, N, generator=gen) * 2 - 1
    x0 = torch.randn(B, N, generator=gen)
    c = torch.randn(B, D, generator=gen)
    ref = torch.nn.RNN(N, N, nonlinearity="tanh", batch_first=True)
    inputs = torch.randn(B, T, N, generator=gen)

    def ref_step():
        ref.zero_grad(set_to_none=True)
        out, _ = ref(inputs, x0[None])
        (out - target).square().mean().backward()

    rnn = RateRNN(dt=0.01, tau=0.05, noise_std=0.01).train()
    t_ref = median_time(ref_step, repeats)
    t_low = median_time(_jedi_step(LowRankHypernet(D, N, rank=RANK), rnn, c, x0, target), repeats)
    t_full = median_time(_jedi_step(FullRankHypernet(D, N), rnn, c, x0, target), repeats)
    return {"name": "jedi_train_step", "torch_threads": torch.get_num_threads(),
            "nn_rnn_s": round(t_ref, 4), "lowrank_s": round(t_low, 4), "fullrank_s": round(t_full, 4),
            "lowrank_ratio": round(t_low / t_ref, 3), "fullrank_ratio": round(t_full / t_ref, 3),
            "targets": "lowrank_ratio <= 1.0, fullrank_ratio <= 5.0"}
