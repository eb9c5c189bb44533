"""Label-free JEDI: inference starts from the table alone, a phase-invariant data-driven table
initialisation, and training + held-out inference that never read a condition label."""
import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from jedi_rnn.models.embedding_init import frame_axes, lagged_covariance_features, pca_embeddings
from jedi_rnn.models.inference_starts import candidate_starts, kmeans_centres, segment_points


def test_segment_points_join_each_point_to_its_nearest_neighbours_once():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    out = segment_points(points, neighbours=1, fractions=(0.5,))
    # nearest pairs: 0-1, 1-0 (same pair), 2-1, 3-2 -> {0-1, 1-2, 2-3}
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.0], [2.0, 0.0], [6.5, 0.0]]))
    quarter = segment_points(points[:2], neighbours=3, fractions=(0.25, 0.75))
    torch.testing.assert_close(quarter, torch.tensor([[0.25, 0.0], [0.75, 0.0]]))
    assert segment_points(points[:1], neighbours=3).shape == (0, 2)


def test_kmeans_centres_of_separated_clusters_are_their_means_in_a_canonical_order():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    rows = torch.cat([m + 0.1 * torch.randn(20, 2, generator=gen) for m in means])
    centres = kmeans_centres(rows, n_centres=3, seed=0)
    expected = torch.stack([rows[20 * i:20 * (i + 1)].mean(0) for i in range(3)])
    order = sorted(range(3), key=lambda i: (expected[i, 0].item(), expected[i, 1].item()))
    torch.testing.assert_close(centres, expected[order], atol=1e-5, rtol=0)
    # shuffling the rows (as a permuted label order would reorder nothing here) gives the same centres
    torch.testing.assert_close(kmeans_centres(rows[torch.randperm(60, generator=gen)], 3, seed=0), centres)


def test_candidate_starts_cap_k_at_the_distinct_rows_and_add_points_between():
    rows = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [2.0, 0.0]])  # a tied table: 2 distinct rows
    centres = candidate_starts(rows, "centres", n_centres=16, neighbours=3)
    torch.testing.assert_close(centres, torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    between = candidate_starts(rows, "centres_between", n_centres=16, neighbours=3)
    torch.testing.assert_close(between[2:], torch.tensor([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]]))
    torch.testing.assert_close(candidate_starts(rows, "mean", 16, 3), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="model.infer.init"):
        candidate_starts(rows, "best_condition", 16, 3)


def _sine_trials(freqs, n_per, T=200, K=12, dt=0.01, seed=0):
    """Trials (n, T, K): each neuron a phase-shifted sine of the trial's frequency, random phase."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(T) * dt
    shifts = torch.rand(K, generator=gen) * 2 * math.pi
    out, labels = [], []
    for k, f in enumerate(freqs):
        phase = torch.rand(n_per, 1, 1, generator=gen) * 2 * math.pi
        out.append(torch.sin(2 * math.pi * f * t[None, :, None] + phase + shifts) + 0.05 * torch.randn(n_per, T, K, generator=gen))
        labels += [k] * n_per
    return torch.cat(out), torch.tensor(labels)


def test_lagged_covariance_features_ignore_the_phase_of_the_same_dynamics():
    t = torch.arange(1000) * 0.01
    x = torch.sin(2 * math.pi * 2.0 * t)[None, :, None].repeat(1, 1, 3)
    shifted = torch.sin(2 * math.pi * 2.0 * t + 1.3)[None, :, None].repeat(1, 1, 3)
    f = lagged_covariance_features(torch.cat([x, shifted]), n_components=1, max_lag=5)
    # closed form: the lag-l covariance of a sine is cos(2 pi f l dt) / 2 times the projection's gain,
    # whatever the phase; the phase-dependent part of a mean over N bins is below 1 / (N sin(2 pi f dt)),
    # under 2 % of the variance for N >= 995
    scale = f[0, 0].item()
    torch.testing.assert_close(f[0] / scale, f[1] / scale, atol=2e-2, rtol=0)
    torch.testing.assert_close(f[0] / scale, torch.cos(2 * math.pi * 2.0 * torch.arange(6) * 0.01).double(),
                               atol=2e-2, rtol=0)


def test_pca_embeddings_separate_frequencies_and_scale_the_first_component_to_the_requested_spread():
    data, labels = _sine_trials([1.0, 2.0, 4.0, 6.0], n_per=10)
    emb = pca_embeddings(data, embedding_dim=8, std=0.1)
    assert emb.shape == (40, 8)
    spread = emb.std(0)
    assert abs(spread[0].item() - 0.1) < 1e-5 and (spread[1:] <= spread[0] + 1e-6).all()
    # every trial's nearest other trial has its frequency: the phase is gone, the dynamics remain
    dist = torch.cdist(emb, emb).fill_diagonal_(float("inf"))
    assert (labels[dist.argmin(1)] == labels).all()
    torch.testing.assert_close(pca_embeddings(data, 8, 0.1), emb)  # deterministic



class _CountingTrials:
    """A lazy trial array that records the largest number of trials read at once."""

    def __init__(self, data: torch.Tensor):
        self.data, self.shape, self.largest_read = data, data.shape, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: slice) -> torch.Tensor:
        out = self.data[key]
        self.largest_read = max(self.largest_read, len(out))
        return out


def test_pca_embeddings_read_trials_a_block_at_a_time_and_match_the_svd_of_all_frames():
    data, _ = _sine_trials([1.0, 3.0, 5.0], n_per=9)
    lazy = _CountingTrials(data)
    emb = pca_embeddings(lazy, embedding_dim=4, std=0.1, block=5)
    assert lazy.largest_read == 5  # memory bounded by the block, not by the number of trials
    torch.testing.assert_close(emb, pca_embeddings(data, 4, 0.1, block=len(data)))
    # the frames' axes from accumulated covariances are those of an SVD of every frame at once
    frames = data.double().reshape(-1, data.shape[2])
    _, _, Vt = torch.linalg.svd(frames - frames.mean(0), full_matrices=False)
    _, axes = frame_axes(data, n_components=3, block=4)
    torch.testing.assert_close((axes @ Vt[:3].T).abs(), torch.eye(3, dtype=torch.float64), atol=1e-8, rtol=0)

@pytest.fixture
def tiny_label_free(compose_cfg):
    """A tiny per-trial JEDI run (2 epochs) with PCA-initialised embeddings on the multi-frequency teacher."""
    def build(permute: str):
        cfg = compose_cfg(["experiment=jedi/multifreq_demo", "model.embedding_tie=trial", "model.embedding_init=pca",
                           "data.source.trials_per_condition=6", "data.source.frequencies=[1,2,4,6]",
                           "data.source.n_units=24", "data.source.duration_s=0.3", "data.source.warmup_s=0.2",
                           "data.heldout_conditions=[2Hz]", "model.infer.steps=3", "model.infer.val_steps=2"])
        pl.seed_everything(cfg.seed, workers=True)
        dm = instantiate(cfg.data)
        dm.setup()
        gen = torch.Generator().manual_seed(1)
        for split in ("train_set", "val_set", "test_set", "heldout_set"):
            trials = getattr(dm, split)
            if permute == "shuffled":
                trials.conditions = trials.conditions[torch.randperm(len(trials), generator=gen)]
            elif permute == "removed":
                trials.conditions = torch.zeros_like(trials.conditions)
        model = instantiate(cfg.model, **dm.dims)
        trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, deterministic=True, check_val_every_n_epoch=1,
                             inference_mode=False)  # held-out inference descends the embeddings
        trainer.fit(model, datamodule=dm)
        results = trainer.test(model, datamodule=dm, verbose=False)
        return model, results
    return build


@pytest.mark.timeout(300)
def test_condition_labels_change_no_trained_weight_and_no_test_number(tiny_label_free):
    """Training and held-out inference are label-free: the same seed with the labels permuted, or all
    set to one condition, gives bit-identical weights, embeddings and test R^2."""
    reference, ref_results = tiny_label_free("kept")
    for permute in ("shuffled", "removed"):
        model, results = tiny_label_free(permute)
        ref_state, state = reference.state_dict(), model.state_dict()
        assert ref_state.keys() == state.keys()
        for key in ref_state:
            assert torch.equal(ref_state[key], state[key]), f"{permute}: {key} differs"
        assert results == ref_results, permute
        for split, inferred in reference.inferred.items():
            assert torch.equal(inferred.embeddings, model.inferred[split].embeddings), (permute, split)


@pytest.mark.timeout(300)
def test_a_recordings_file_without_labels_trains_tests_and_analyses(compose_cfg, tmp_path, caplog):
    """data=jedi/recordings on a file with no `condition` array: JEDI needs none; the probes, which
    do, are skipped with a one-line note, and the label-free analyses run."""
    import logging

    import numpy as np

    from experiments.glue.run import train

    rng = np.random.default_rng(0)
    t = np.arange(30) * 0.01
    freq, phase = rng.choice([2.0, 5.0], 24), rng.uniform(0, 2 * np.pi, 24)
    rates = 0.5 * np.sin(2 * np.pi * freq[:, None, None] * t[None, :, None] + phase[:, None, None] + np.arange(6))
    path = tmp_path / "unlabelled.npz"
    np.savez(path, rates=rates.astype(np.float32), dt=0.01)
    cfg = compose_cfg(["data=jedi/recordings", f"data.source.path={path}", "analysis=jedi/recordings",
                       "trainer.max_epochs=2", "model.infer.steps=3", "model.infer.val_steps=2", "callbacks=none"])
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    assert np.isfinite(metrics["test/r2"]) and np.isfinite(metrics["analysis/spectra/radius_mean"])
    assert "analysis/lyapunov/lambda_max" in metrics
    assert not any(k.startswith("analysis/probes/") for k in metrics)
    assert "embedding probes skipped: the training trials carry one condition" in caplog.text
