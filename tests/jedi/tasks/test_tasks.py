"""Task generators: seeding, epoch structure, flip-flop targets, constant-input segments, datamodule."""
import numpy as np
import pytest
import torch

from jedi_rnn.data.tasks import FlipFlop, MemoryPro, TaskDataModule, TaskTrial, trial_rng


def _same(a: TaskTrial, b: TaskTrial) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("inputs", "clean_inputs", "targets", "mask"))


@pytest.mark.parametrize("task", [MemoryPro(), FlipFlop(n_steps=200, pulse_steps=3)])
def test_trials_are_seeded_per_index(task):
    assert _same(task.new_trial(trial_rng(7, 3)), task.new_trial(trial_rng(7, 3)))
    assert not _same(task.new_trial(trial_rng(7, 3)), task.new_trial(trial_rng(7, 4)))
    assert not _same(task.new_trial(trial_rng(7, 3)), task.new_trial(trial_rng(8, 3)))


def test_memorypro_epochs_lie_in_their_ranges_and_shape_the_trial():
    task = MemoryPro(dt=0.02, input_noise=0.3)
    # ms ranges / 20 ms: context 300-700, stimulus 200-1600, memory 200-1600, response 300-700
    ranges = {"context": (15, 35), "stimulus": (10, 80), "memory": (10, 80), "response": (15, 35)}
    seen = {k: set() for k in ranges}
    for i in range(60):
        tr = task.new_trial(trial_rng(0, i))
        steps = tr.info["steps"]
        for k, (lo, hi) in ranges.items():
            assert lo <= steps[k] <= hi
            seen[k].add(steps[k])
        c, s, m, r = np.cumsum([steps[k] for k in ("context", "stimulus", "memory", "response")])
        theta = tr.info["theta"]
        assert tr.n_steps == r
        u = tr.clean_inputs
        np.testing.assert_array_equal(u[:m, 0], 1.0)
        np.testing.assert_array_equal(u[m:, 0], 0.0)
        np.testing.assert_allclose(u[c:s, 1:], np.tile([np.cos(theta), np.sin(theta)], (s - c, 1)), atol=1e-6)
        assert not u[:c, 1:].any() and not u[s:, 1:].any()
        np.testing.assert_allclose(tr.targets[m:, 1:], np.tile([np.cos(theta), np.sin(theta)], (r - m, 1)), atol=1e-6)
        np.testing.assert_array_equal(tr.targets[:m, 0], 1.0)
        np.testing.assert_array_equal(tr.mask[m:m + 5], 0.0)  # 100 ms grace at the response onset
        np.testing.assert_array_equal(tr.mask[m + 5:], 1.0)
        assert (tr.inputs - u).std() == pytest.approx(0.3, rel=0.2)  # input noise std
    assert all(len(v) > 5 for v in seen.values())  # durations do vary


def test_memorypro_forced_condition_and_labels():
    task = MemoryPro()
    tr = task.new_trial(trial_rng(0, 0), theta=np.pi / 2, input_noise=0.0)
    assert [s.label for s in tr.segments] == ["context", "stimulus/theta=090", "memory/theta=090", "response/theta=090"]
    np.testing.assert_array_equal(tr.inputs, tr.clean_inputs)
    assert len(task.conditions()) == 8


def test_memorypro_training_directions_continuous_or_on_a_grid():
    thetas = [MemoryPro().new_trial(trial_rng(1, i)).info["theta"] for i in range(200)]
    assert len(set(np.round(thetas, 6))) == 200 and 0 <= min(thetas) and max(thetas) < 2 * np.pi
    task = MemoryPro(train_directions=4)
    grid = [task.new_trial(trial_rng(1, i)).info["theta"] for i in range(200)]
    assert set(np.round(np.degrees(grid), 6)) == {0.0, 90.0, 180.0, 270.0}
    with pytest.raises(ValueError, match="task.train_directions"):
        MemoryPro(train_directions=0)


def _independent_flipflop_targets(clean: np.ndarray, pulses: np.ndarray) -> np.ndarray:
    """Target = sign of the latest pulse onset per bit (0 before any), by a cumulative-max index."""
    T, K = pulses.shape
    last = np.maximum.accumulate(np.where(pulses, np.arange(T)[:, None], -1), axis=0)
    onset_sign = clean[np.clip(last, 0, None), np.arange(K)[None, :]]
    return np.where(last >= 0, onset_sign, 0.0)


@pytest.mark.parametrize("pulse_steps", [1, 5])
def test_flipflop_targets_hold_the_last_pulse_sign(pulse_steps):
    task = FlipFlop(n_steps=300, switch_prob=0.03, pulse_steps=pulse_steps, blind_steps=4, pulse_at_start=False)
    for i in range(10):
        tr = task.new_trial(trial_rng(1, i))
        pulses = tr.info["pulses"]
        np.testing.assert_array_equal(tr.targets, _independent_flipflop_targets(tr.clean_inputs, pulses))
        # unscored: before a bit's first pulse and for the pulse step + 4 blind steps after each pulse
        T = pulses.shape[0]
        for k in range(3):
            for t in np.flatnonzero(pulses[:, k]):
                assert not tr.mask[t:t + 5, k].any()
            first = np.flatnonzero(pulses[:, k])
            if len(first):
                assert not tr.mask[: first[0], k].any()
            last = [max([p for p in first if p <= t], default=None) for t in range(T)]
            expected = [p is not None and t - p >= 5 for t, p in enumerate(last)]
            np.testing.assert_array_equal(tr.mask[:, k], np.asarray(expected, np.float32))
        # a pulse lasts pulse_steps steps with its onset sign (when no newer onset interrupts it)
        for t, k in zip(*np.nonzero(pulses)):
            if t + pulse_steps <= T and not pulses[t + 1:t + pulse_steps, k].any():
                assert np.all(tr.clean_inputs[t:t + pulse_steps, k] == tr.clean_inputs[t, k])


@pytest.mark.parametrize("task", [MemoryPro(), FlipFlop(n_steps=400, pulse_steps=5)])
def test_segments_have_constant_input(task):
    n_segments = 0
    for i in range(8):
        tr = task.new_trial(trial_rng(2, i))
        for seg in tr.segments:
            u = tr.clean_inputs[seg.start:seg.stop]
            assert seg.stop > seg.start and np.all(u == u[0])
            n_segments += 1
            if isinstance(task, FlipFlop):
                assert not u.any()  # between pulses the input is zero
                held = tr.targets[seg.start]
                assert seg.label == "".join("+" if b > 0 else "-" for b in held)
                np.testing.assert_array_equal(tr.targets[seg.start:seg.stop], np.tile(held, (seg.stop - seg.start, 1)))
    assert n_segments > 8


def test_task_datamodule_is_seeded_and_padded():
    task = MemoryPro()
    a, b = TaskDataModule(task, n_train=12, n_val=4, batch_size=4, seed=5), TaskDataModule(task, n_train=12, n_val=4, batch_size=4, seed=5)
    a.setup(), b.setup()
    assert a.dims == {"n_inputs": 3, "n_outputs": 3}
    for x, y in zip(a.train_set.tensors, b.train_set.tensors):
        assert torch.equal(x, y)
    u, y, m = a.train_set.tensors
    assert u.shape == (12, task.max_steps, 3) == y.shape == m.shape
    # trial i of the train split is trial_rng(seed, i); padding beyond its end is unscored
    tr = task.new_trial(trial_rng(5, 3))
    assert torch.equal(u[3, :tr.n_steps], torch.from_numpy(tr.inputs))
    assert not m[3, tr.n_steps:].any()
    assert not torch.equal(a.val_set.tensors[0][0], u[0])  # val trials come from another stream
    assert len(list(a.train_dataloader())) == 3


@pytest.mark.parametrize("rotation_deg", [0.0, 30.0, -100.0, 179.0])
def test_memorypro_performance_is_the_response_angle_error(rotation_deg):
    task = MemoryPro(input_noise=0.0)
    for i in range(8):
        tr = task.new_trial(trial_rng(2, i), **task.conditions()[i])
        out = tr.targets.copy()
        phi = tr.info["theta"] + np.radians(rotation_deg)
        r0 = tr.segments[-1].start
        out[r0:, 1:] = 0.5 * np.array([np.cos(phi), np.sin(phi)])  # a rotated (and shrunk) report
        out[:r0, 1:] = 3.0  # outputs before the response epoch are not scored
        error = task.performance(tr, out)["response_error_deg"]
        assert error == pytest.approx(abs(rotation_deg), abs=1e-3)


def test_flipflop_performance_is_the_fraction_of_correct_signs():
    task = FlipFlop(n_steps=300, switch_prob=0.03)
    tr = task.new_trial(trial_rng(3, 0))
    scored = tr.mask > 0
    assert task.performance(tr, 0.7 * tr.targets)["bit_accuracy"] == 1.0
    flipped = tr.targets.copy()
    flipped[:, 0] *= -1  # bit 0 always wrong
    expected = 1.0 - scored[:, 0].sum() / scored.sum()
    assert task.performance(tr, flipped)["bit_accuracy"] == pytest.approx(expected)
