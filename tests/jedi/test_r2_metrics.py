"""R^2 metrics equal an independent numpy computation, with NaN-masked entries, in any batching."""
import numpy as np
import pytest
import torch

from jedi_rnn.metrics.r2 import MeanNeuronR2, VarianceWeightedR2


def _numpy_r2(y, yhat):
    y, yhat = y.reshape(-1, y.shape[-1]), yhat.reshape(-1, y.shape[-1])
    sse, sst = [], []
    for k in range(y.shape[1]):
        ok = ~np.isnan(y[:, k])
        sse.append(((y[ok, k] - yhat[ok, k]) ** 2).sum())
        sst.append(((y[ok, k] - y[ok, k].mean()) ** 2).sum())
    sse, sst = np.array(sse), np.array(sst)
    return 1 - sse.sum() / sst.sum(), np.mean(1 - sse / sst)


def test_r2_matches_numpy_with_nan_mask_and_batch_splits():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(12, 9, 5)) * np.array([1, 2, 3, 0.5, 4])
    yhat = y + rng.normal(scale=0.7, size=y.shape)
    y[rng.random(y.shape) < 0.1] = np.nan
    vw_ref, mean_ref = _numpy_r2(y, yhat)
    vw, mn = VarianceWeightedR2(5), MeanNeuronR2(5)
    for sl in (slice(0, 5), slice(5, 6), slice(6, 12)):  # uneven batches, as on several ranks
        vw.update(torch.tensor(yhat[sl]), torch.tensor(y[sl]))
        mn.update(torch.tensor(yhat[sl]), torch.tensor(y[sl]))
    assert abs(float(vw.compute()) - vw_ref) < 1e-6
    assert abs(float(mn.compute()) - mean_ref) < 1e-6


def test_r2_is_one_for_perfect_prediction_and_zero_for_the_mean():
    y = torch.randn(4, 10, 3)
    m = VarianceWeightedR2(3)
    m.update(y, y)
    assert float(m.compute()) == 1.0
    m = VarianceWeightedR2(3)
    m.update(y.mean((0, 1), keepdim=True).expand_as(y), y)
    assert abs(float(m.compute())) < 1e-6


def _ddp_worker(rank, world, port, y, yhat, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    metric = VarianceWeightedR2(y.shape[-1])
    half = slice(0, 7) if rank == 0 else slice(7, None)  # uneven shards
    metric.update(yhat[half], y[half])
    out[rank] = float(metric.compute())  # torchmetrics all-reduces the sum states
    dist.destroy_process_group()


def test_r2_is_synchronised_across_two_gloo_ranks():
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = torch.Generator().manual_seed(1)
    y = torch.randn(12, 6, 4, generator=g)
    yhat = y + 0.5 * torch.randn(12, 6, 4, generator=g)
    whole = VarianceWeightedR2(4)
    whole.update(yhat, y)
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, y, yhat, out), nprocs=2, join=True)
    assert out[0] == out[1] == pytest.approx(float(whole.compute()), abs=1e-6)
