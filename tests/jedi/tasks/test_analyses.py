"""Embedding probes, generalisation bookkeeping and Hungarian fixed-point recovery."""
from functools import partial

import numpy as np
import pytest
import torch

from jedi_rnn.analysis.generalisation import per_condition_r2
from jedi_rnn.analysis.probes import analyze_embedding_probes, classification_probe, value_regression
from jedi_rnn.analysis.recovery import (compare_sets, components, condition_metrics, data_distance, hungarian_match, rate_spread,
                                    recovered_fraction, stable_timescale)
from jedi_rnn.data.trials import TrialDataModule, TrialSet
from jedi_rnn.lit_module import JediModule
from jedi_rnn.models.hypernet import LowRankHypernet
from jedi_rnn.models.rnn import RateRNN


def test_probe_recovers_separable_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    centres = 5.0 * np.eye(4, 6)
    emb = centres[labels] + 0.3 * rng.standard_normal((100, 6))
    out = classification_probe(emb, labels, n_splits=5, seed=0)
    assert out["accuracy"] == 1.0 and out["balanced_accuracy"] == 1.0 and out["chance"] == 0.25


def test_probe_is_at_chance_on_shuffled_noise():
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.repeat(np.arange(4), 100))
    emb = rng.standard_normal((400, 8))
    out = classification_probe(emb, labels, n_splits=5, seed=0)
    # chance 0.25; the std of the accuracy of 400 independent guesses is ~0.022
    assert abs(out["accuracy"] - 0.25) < 0.08 and abs(out["balanced_accuracy"] - 0.25) < 0.08


def test_value_regression_r2():
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((120, 5))
    values = emb @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 3.0
    assert value_regression(emb, values) > 0.99
    assert value_regression(emb, rng.standard_normal(120)) < 0.1


def test_hungarian_identical_sets():
    rng = np.random.default_rng(3)
    pts = rng.standard_normal((6, 10))
    stable = np.array([True, False, True, True, False, True])
    out = compare_sets(pts, stable, pts.copy(), stable.copy(), spread=2.0, radius=0.1)
    assert out["matched_distance"] == 0.0 and out["stability_agreement"] == 1.0 and out["close_fraction"] == 1.0
    assert out["n_student"] == out["n_teacher"] == 6


def test_hungarian_finds_the_permutation_of_a_perturbed_set():
    rng = np.random.default_rng(4)
    teacher = 3.0 * rng.standard_normal((7, 12))
    perm = rng.permutation(7)
    noise = 0.01 * rng.standard_normal((7, 12))
    student = teacher[perm] + noise
    rows, cols, dist = hungarian_match(student, teacher)
    np.testing.assert_array_equal(cols[np.argsort(rows)], perm)  # student i <-> teacher perm[i]
    np.testing.assert_allclose(dist, np.linalg.norm(noise[rows], axis=1))
    stable = rng.random(7) < 0.5
    flipped = stable[perm].copy()
    flipped[0] = ~flipped[0]
    out = compare_sets(student, flipped, teacher, stable, spread=0.5, radius=0.2)
    assert out["matched_distance"] == pytest.approx(np.linalg.norm(noise, axis=1).mean() / 0.5)
    assert out["stability_agreement"] == pytest.approx(6 / 7) and out["close_fraction"] == 1.0
    far = compare_sets(student + 10.0, flipped, teacher, stable, spread=0.5, radius=0.2)
    assert far["close_fraction"] == 0.0 and np.isnan(far["stability_agreement"])


def test_ring_compared_as_a_set_and_recovered_fraction():
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], 1)  # neighbours 2 sin(pi/40) = 0.157 apart
    student = ring[::10] * 1.01  # 4 points on a slightly larger ring
    rows, cols, dist = hungarian_match(student, ring)
    assert len(rows) == 4 and np.allclose(dist, 0.01) and set(cols) == {0, 10, 20, 30}
    # linked at 0.1 the ring is 40 isolated points, of which 4 are recovered; linked at 0.2 it is one set
    assert recovered_fraction(student, ring, radius=0.05, link_radius=0.1) == pytest.approx(0.1)
    assert recovered_fraction(student, ring, radius=0.05, link_radius=0.2) == 1.0
    assert recovered_fraction(student + 10.0, ring[::10], radius=0.05, link_radius=0.1) == 0.0
    assert np.isnan(recovered_fraction(student, ring[:0], radius=0.05, link_radius=0.1))
    assert np.isnan(compare_sets(np.zeros((0, 2)), np.zeros(0, bool), ring, np.ones(40, bool), 1.0, 0.1)["matched_distance"])


def test_components_link_chains_of_close_points():
    # a slow line sampled at 0.04 steps, and one isolated point
    pts = np.array([[0.0, 0.0], [0.04, 0.0], [0.08, 0.0], [1.0, 0.0]])
    labels = components(pts, radius=0.05)
    assert labels[0] == labels[1] == labels[2] != labels[3]
    assert len(np.unique(components(pts, radius=0.03))) == 4
    assert len(components(np.zeros((0, 2)), 0.05)) == 0


def test_condition_metrics_counts_stable_sets():
    line = np.array([[0.0, 0.0], [0.04, 0.0], [0.08, 0.0]])  # one slow line of stable points
    teacher = np.concatenate([line, [[1.0, 0.0], [0.0, 1.0]]])  # plus an isolated attractor and a saddle
    t_stable = np.array([True, True, True, True, False])
    student = np.array([[0.05, 0.01], [0.0, 1.02]])  # on the line, and the saddle
    s_stable = np.array([True, False])
    out = condition_metrics(student, s_stable, teacher, t_stable, spread=2.0, radius=0.1, link_radius=0.05)
    assert out["n_teacher_stable"] == 2.0 and out["n_student_stable"] == 1.0 and out["stable_count_match"] == 0.0
    assert out["n_teacher"] == 3.0 and out["n_student"] == 2.0
    assert out["stable_recovered_fraction"] == 0.5  # the line is, the isolated attractor is not
    assert out["stable_structure_match"] == 0.0
    # Hungarian: the student's stable point with the nearest line point (0.04, 0), the saddle with the saddle
    assert out["stable_matched_distance"] == pytest.approx(np.hypot(0.01, 0.01) / 2.0)
    assert out["stability_agreement"] == 1.0
    same = condition_metrics(line[:1], t_stable[:1], line, t_stable[:3], spread=1.0, radius=0.1, link_radius=0.05)
    assert same["stable_count_match"] == 1.0 and same["stable_recovered_fraction"] == 1.0
    assert same["stable_structure_match"] == 1.0
    # one student attractor per teacher attractor, but one pair is too far apart: counts agree, structure does not
    off = condition_metrics(np.array([[0.0, 0.0], [1.3, 0.0]]), np.array([True, True]), teacher[[0, 3]],
                            np.array([True, True]), spread=1.0, radius=0.1, link_radius=0.05)
    assert off["stable_count_match"] == 1.0 and off["stable_recovered_fraction"] == 0.5
    assert off["stable_structure_match"] == 0.0
    none = condition_metrics(teacher[4:], np.array([False]), teacher[4:], np.array([False]), 1.0, 0.1, 0.05)
    assert none["stable_structure_match"] == 1.0 and np.isnan(none["stable_recovered_fraction"])


def test_stable_timescale_is_the_median_decay_time_of_the_stable_points():
    # |lambda_max| 0.5 and 0.9 at two stable points (0.99 at an unstable one is left out); dt = 0.02 s
    eig = np.array([[0.5, 0.1], [-0.9j, 0.2], [1.2, 0.99]])
    taus = [-0.02 / np.log(0.5), -0.02 / np.log(0.9)]
    assert stable_timescale(eig, [True, True, False], 0.02) == pytest.approx(np.median(taus))
    assert np.isnan(stable_timescale(eig, [False, False, False], 0.02))
    assert np.isnan(stable_timescale(np.zeros((3, 0)), [True, True, False], 0.02))  # no eigenvalues kept


def test_data_distance_is_the_nearest_frame_distance_in_spreads():
    frames = np.array([[0.0, 0.0], [3.0, 4.0]])
    points = np.array([[0.0, 1.0], [6.0, 8.0]])  # 1 from the first frame, 5 from the second
    assert data_distance(points, frames, spread=2.0) == pytest.approx((1.0 + 5.0) / 2 / 2.0)
    assert np.isnan(data_distance(np.zeros((0, 2)), frames, 1.0))


def test_rate_spread_is_rms_distance_to_the_mean():
    rng = np.random.default_rng(5)
    data = rng.standard_normal((3, 4, 5))
    data[0, 3] = np.nan
    frames = data.reshape(-1, 5)
    frames = frames[~np.isnan(frames).any(1)]
    expected = np.sqrt(((frames - frames.mean(0)) ** 2).sum(1).mean())
    assert rate_spread(torch.from_numpy(data)) == pytest.approx(expected)


def _tiny_jedi(n_trials: int, n_conditions: int, n_neurons: int = 4, rank: int = 2, dt: float = 0.01,
               tau: float = 0.05) -> JediModule:
    with torch.random.fork_rng():  # the module initialises from the global generator; keep it untouched
        torch.manual_seed(0)
        return JediModule(n_neurons=n_neurons, n_train_trials=n_trials, n_conditions=n_conditions, n_steps=6, dt=dt,
                          hypernet=partial(LowRankHypernet, rank=rank, hidden_dim=8), rnn=partial(RateRNN, tau=tau),
                          embedding_dim=3).eval()


def _trialset(n: int, n_cond: int, seed: int) -> TrialSet:
    g = torch.Generator().manual_seed(seed)
    return TrialSet(data=0.5 * torch.tanh(torch.randn(n, 6, 4, generator=g)), conditions=torch.arange(n) % n_cond,
                    condition_names=[f"c{i}" for i in range(n_cond)], dt=0.01)


def test_per_condition_r2_matches_numpy():
    module = _tiny_jedi(10, 2)
    trials = _trialset(9, 3, seed=0)
    emb = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    scores = per_condition_r2(module, trials, emb, batch_size=4)
    from jedi_rnn.data.trials import TrialBatch
    with torch.no_grad():
        pred = module.predict(emb, TrialBatch(torch.arange(9), trials.conditions, trials.data, {})).numpy()
    y = trials.data.numpy()
    for c in range(3):
        sel = trials.conditions.numpy() == c
        yc, pc = y[sel].reshape(-1, 4), pred[sel].reshape(-1, 4)
        expected = 1 - ((yc - pc) ** 2).sum() / ((yc - yc.mean(0)) ** 2).sum()
        assert scores[c] == pytest.approx(expected, rel=1e-5)


def test_probe_entry_point_on_a_module(tmp_path):
    trials = _trialset(60, 3, seed=2)
    dm = TrialDataModule(lambda: trials, batch_size=8, split=[0.7, 0.15, 0.15], seed=0)
    dm.setup()
    module = _tiny_jedi(len(dm.train_set), 3)
    y = dm.train_set.conditions
    with torch.no_grad():  # separable embeddings: one corner per condition
        module.embeddings.table.weight.copy_(3.0 * torch.eye(3)[y] + 0.1 * torch.randn(len(y), 3, generator=torch.Generator().manual_seed(3)))
    out = analyze_embedding_probes(module, dm, tmp_path)  # no test pass yet: the training table alone
    assert out["probes/train_accuracy"] == 1.0 and out["probes/train_chance"] == pytest.approx(1 / 3)
    # one tight cluster per condition: k-means finds exactly the conditions
    assert out["probes/train_cluster_ari"] == 1.0 and out["probes/train_cluster_nmi"] == pytest.approx(1.0)
    assert "probes/accuracy" not in out and "probes/train_value_r2" not in out
    # a family with a number per condition: embeddings carry it linearly -> ridge R^2 near 1
    dm.train_set.condition_values = torch.tensor([1.0, 4.0, 9.0])
    with torch.no_grad():
        module.embeddings.table.weight[:, 0] = dm.train_set.condition_values[y] + 0.01 * torch.randn(len(y), generator=torch.Generator().manual_seed(4))
    out = analyze_embedding_probes(module, dm, tmp_path)
    assert out["probes/train_value_r2"] > 0.99
    assert (tmp_path / "embedding_pca.png").stat().st_size > 0


@pytest.mark.parametrize("student", ["condition_mean", "trial"])
def test_recovery_of_a_student_equal_to_the_teacher(tmp_path, student):
    """A student whose J(c) is the bistable teacher's J for every c recovers its 8 attractors exactly,
    searched at each condition's mean embedding or pooled over each trial's own."""
    from test_teacher_recordings import _bistable_teacher, _xstar

    from jedi_rnn.analysis.recovery import analyze_fixed_point_recovery
    from jedi_rnn.data.task_recordings import TaskRecordingsDataModule, TaskTeacherRecordings
    from jedi_rnn.data.tasks import FlipFlop

    teacher = _bistable_teacher()
    rec = partial(TaskTeacherRecordings, task=FlipFlop(n_steps=300, switch_prob=0.02, pulse_steps=5), n_trials=6,
                  segment_len=10, min_steps=5, fixed_points={"n_inits": 64, "init_noise": 0.5, "max_q": 1e-10}, seed=0)
    dm = TaskRecordingsDataModule({"teacher": teacher}, rec, batch_size=8, split=[0.6, 0.2, 0.2])
    dm.setup()
    module = _tiny_jedi(len(dm.train_set), len(dm.full_set.condition_names), n_neurons=3, rank=3, dt=0.02, tau=0.1)
    N = 3
    with torch.no_grad():  # U = V = sqrt(2N) I, so J(c) = U V^T / N = 2 I = the teacher's J, whatever c
        head = module.hypernet.head
        head.weight.zero_()
        eye = (2.0 * N) ** 0.5 * torch.eye(N)
        head.bias.copy_(torch.stack([eye, eye]).reshape(-1))
    out = analyze_fixed_point_recovery(module, dm, tmp_path, n_inits=64 if student == "condition_mean" else 16,
                                       init_noise=0.5, max_q=1e-10, teacher_max_q=1e-10, link_radius=0.05,
                                       condition_groups={"first_up": "+"}, student=student)
    # per condition: the one attractor its segments sit at, found by both at the same place
    assert out["recovery/stable_count_match"] == 1.0 and out["recovery/n_teacher_stable"] == 1.0
    assert out["recovery/stable_structure_match"] == 1.0
    assert out["recovery/stable_recovered_fraction"] == 1.0
    assert out["recovery/stable_matched_distance"] < 1e-4
    assert out["recovery/stability_agreement"] == 1.0  # every close pair is the same fixed point
    assert out["recovery/teacher_stable_data_distance"] < 0.05  # the segments reach their attractor
    assert out["recovery/first_up/stable_count_match"] == 1.0
    assert np.isfinite(out["recovery/first_up/matched_distance"])
    # at (+-x*, +-x*, +-x*) the update's Jacobian is (1 - a) I + a 2 sech^2(x*) I, a = 0.2, dt = 0.02 s
    lam = 0.8 + 0.2 * 2.0 / np.cosh(_xstar(2.0)) ** 2
    for who in ("teacher", "student"):
        assert out[f"recovery/{who}_stable_timescale_s"] == pytest.approx(-0.02 / np.log(lam), rel=1e-4)
    assert out["recovery/stable_timescale_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert (tmp_path / "fixed_point_recovery.png").exists()
    table = np.load(tmp_path.parent / "analysis" / "fixed_point_recovery.npz")
    assert list(table["conditions"]) == sorted(dm.full_set.condition_names)
    np.testing.assert_array_equal(table["stable_count_match"], 1.0)


def test_generalisation_reports_seen_and_heldout_side_by_side(tmp_path):
    from jedi_rnn.analysis.generalisation import analyze_generalisation
    from jedi_rnn.lit_module import InferredEmbeddings

    trials = _trialset(40, 4, seed=6)
    dm = TrialDataModule(lambda: trials, batch_size=8, split=[0.6, 0.2, 0.2], heldout_conditions=["c3"], seed=0)
    dm.setup()
    module = _tiny_jedi(len(dm.train_set), 4)
    g = torch.Generator().manual_seed(7)
    module.inferred = {"test": InferredEmbeddings(torch.randn(len(dm.test_set), 3, generator=g), dm.test_set.conditions, 0.8),
                       "heldout_cond": InferredEmbeddings(torch.randn(len(dm.heldout_set), 3, generator=g),
                                                          dm.heldout_set.conditions, 0.5)}
    out = analyze_generalisation(module, dm, tmp_path)
    assert out["generalisation/r2_seen"] == pytest.approx(0.8) and out["generalisation/r2_heldout_cond"] == 0.5
    assert out["generalisation/gap"] == pytest.approx(0.3)
    assert {k for k in out if k.startswith("generalisation/r2/")} == {f"generalisation/r2/c{i}" for i in range(4)}
    expected = per_condition_r2(module, dm.heldout_set, module.inferred["heldout_cond"].embeddings)
    assert out["generalisation/r2/c3"] == pytest.approx(expected[3])
    seen = per_condition_r2(module, dm.test_set, module.inferred["test"].embeddings)
    assert out["generalisation/r2_seen_condition_mean"] == pytest.approx(np.mean([seen[c] for c in range(3)]))
    assert out["generalisation/gap_condition_mean"] == pytest.approx(np.mean([seen[c] for c in range(3)]) - expected[3])
    assert (tmp_path / "generalisation.png").exists()


def test_probe_of_a_tied_table_pools_the_test_and_validation_trials(tmp_path):
    """One training row per condition: the CV probe runs on embeddings inferred for every held-out
    trial of a seen condition (test + validation), not on copies of the rows. Each trial is the
    student's own output for its condition's row, so inference returns that row and the pooled
    probe is exact."""
    import pytorch_lightning as pl

    from jedi_rnn.data.trials import TrialBatch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = JediModule(n_neurons=4, n_train_trials=42, n_conditions=3, n_steps=6, dt=0.01,
                            hypernet=partial(LowRankHypernet, rank=2, hidden_dim=8), rnn=partial(RateRNN, tau=0.05),
                            embedding_dim=3, embedding_tie="condition", infer={"steps": 0, "val_steps": 0}).eval()
    rows = 3.0 * torch.eye(3)
    with torch.no_grad():
        module.embeddings.table.weight.copy_(rows)
        template = _trialset(60, 3, seed=2)
        data = module.predict(rows[template.conditions], TrialBatch(torch.arange(60), template.conditions, template.data, {}))
    trials = TrialSet(data=data, conditions=template.conditions, condition_names=template.condition_names, dt=0.01)
    dm = TrialDataModule(lambda: trials, batch_size=8, split=[0.7, 0.15, 0.15], seed=0)
    dm.setup()
    pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).test(module, datamodule=dm)  # infers the test split's embeddings
    assert torch.allclose(module.inferred["test"].embeddings, rows[dm.test_set.conditions])
    out = analyze_embedding_probes(module, dm, tmp_path, n_splits=2)
    assert out["probes/n_probed"] == len(dm.test_set) + len(dm.val_set)
    assert out["probes/accuracy"] == 1.0 and out["probes/cluster_ari"] == 1.0
    assert not any(k.startswith("probes/train_") for k in out)  # a tied table's rows are not probed
