"""Trial datasets: stratified splits, held-out conditions, cache round trips, teacher determinism."""
import numpy as np
import pytest
import torch

from experiments.glue.cache import DiskCache
from jedi_rnn.data.teachers import SyntheticTeacher
from jedi_rnn.data.trials import TrialDataModule, TrialSet, load_or_generate


def _tiny_teacher(**kw):
    return SyntheticTeacher(n_units=20, trials_per_condition=10, frequencies=[1, 2, 3, 4], warmup_s=0.2,
                            duration_s=0.3, **kw)


def test_split_is_stratified_disjoint_and_holds_out_whole_conditions(tmp_path):
    dm = TrialDataModule(_tiny_teacher(), heldout_conditions=["3Hz"], cache=DiskCache(tmp_path))
    dm.setup()
    names = dm.full_set.condition_names
    assert set(dm.heldout_set.conditions.tolist()) == {names.index("3Hz")}
    for s in (dm.train_set, dm.val_set, dm.test_set):
        assert names.index("3Hz") not in s.conditions.tolist()
    # 10 trials per seen condition -> 2 val (1.5 rounded half to even) / 2 test / 6 train
    assert torch.bincount(dm.train_set.conditions, minlength=4)[[0, 1, 3]].tolist() == [6, 6, 6]
    assert torch.bincount(dm.val_set.conditions, minlength=4)[[0, 1, 3]].tolist() == [2, 2, 2]
    total = len(dm.train_set) + len(dm.val_set) + len(dm.test_set) + len(dm.heldout_set)
    assert total == len(dm.full_set) == 40
    assert dm.dims == {"n_neurons": 20, "n_steps": 30, "n_train_trials": 18, "n_conditions": 4, "dt": 0.01}


def test_unknown_heldout_condition_names_the_key(tmp_path):
    dm = TrialDataModule(_tiny_teacher(), heldout_conditions=["11Hz"], cache=DiskCache(tmp_path))
    with pytest.raises(ValueError, match=r"data.heldout_conditions.*11Hz"):
        dm.setup()


def test_teacher_is_seeded_and_cache_round_trips(tmp_path):
    a, b = _tiny_teacher(seed=3)(), _tiny_teacher(seed=3)()
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, _tiny_teacher(seed=4)().data)
    cached = load_or_generate(_tiny_teacher(seed=3), DiskCache(tmp_path))
    again = load_or_generate(_tiny_teacher(seed=3), DiskCache(tmp_path))
    assert torch.equal(cached.data, a.data) and torch.equal(again.data, a.data)
    assert again.condition_names == a.condition_names
    np.testing.assert_array_equal(again.meta["teacher_J"], a.meta["teacher_J"])


def test_corrupt_cache_is_regenerated_not_used(tmp_path):
    first = load_or_generate(_tiny_teacher(), DiskCache(tmp_path))
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])  # truncated file
    again = load_or_generate(_tiny_teacher(), DiskCache(tmp_path))
    assert torch.equal(again.data, first.data)


def test_trialset_validation_names_the_array():
    ts = TrialSet(torch.zeros(3, 4, 2), torch.zeros(2, dtype=torch.long), ["a"], 0.01)
    with pytest.raises(ValueError, match="'condition'"):
        ts.validate("file.npz")


def test_multitask_inputs_have_the_configured_frequency_and_one_channel_per_task():
    teacher = SyntheticTeacher(family="multitask", n_units=8, trials_per_condition=3, task_frequency=(2.0, 2.0),
                               warmup_s=0.0, duration_s=1.0, seed=0)
    u, labels, names, _ = teacher._inputs(np.random.default_rng(0))
    sine = u[labels == names.index("sine")][:, :, names.index("sine")]  # (3, T = 100 bins of 10 ms)
    # a 2 Hz sine: u(t + 0.5 s) == u(t), and the other channels of a sine trial are silent
    np.testing.assert_allclose(sine[:, :50], sine[:, 50:], atol=1e-9)
    assert np.abs(sine).max() > 0.9 * teacher.amplitude
    assert np.all(u[labels == names.index("sine")][:, :, 1:] == 0)
    with pytest.raises(ValueError, match="data.source.task_frequency"):
        SyntheticTeacher(family="multitask", task_frequency=(5.0, 2.0))


def test_task_frequency_pairs_are_conditions_with_their_frequency_as_value(tmp_path):
    teacher = SyntheticTeacher(family="multitask", n_units=8, trials_per_condition=8, tasks=["sine", "square"],
                               task_frequencies=[2, 5], shared_channel=True, warmup_s=0.0, duration_s=1.0, seed=0)
    u, labels, names, values = teacher._inputs(np.random.default_rng(0))
    assert names == ["sine@2Hz", "sine@5Hz", "square@2Hz", "square@5Hz"]
    np.testing.assert_array_equal(values, [2.0, 5.0, 2.0, 5.0])
    # a 5 Hz square wave repeats every 0.2 s (20 bins) and only takes the values +-amplitude
    square5 = u[labels == names.index("square@5Hz")][:, :, 0]
    np.testing.assert_allclose(square5[:, :80], square5[:, 20:], atol=1e-9)
    assert set(np.unique(np.abs(square5)).round(6)) <= {round(teacher.amplitude, 6), 0.0}
    # a held-out pair is a whole condition, named as the user writes it on the command line
    dm = TrialDataModule(teacher, heldout_conditions=["square@5Hz"], cache=DiskCache(tmp_path))
    dm.setup()
    assert set(dm.heldout_set.conditions.tolist()) == {names.index("square@5Hz")}
    with pytest.raises(ValueError, match="data.source.task_frequencies"):
        SyntheticTeacher(family="multifreq", task_frequencies=[2.0])
