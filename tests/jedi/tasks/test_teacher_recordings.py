"""Task teacher RNN and its recordings: dynamics, loss, segment cutting, ground-truth fixed points."""
import math

import numpy as np
import pytest
import torch

from experiments.glue.cache import DiskCache
from jedi_rnn.data.task_recordings import (TaskRecordingsDataModule, TaskTeacherRecordings, cut_segments, module_hash,
                                       teacher_fixed_points)
from jedi_rnn.data.tasks import FlipFlop, MemoryPro, Segment, TaskDataModule, TaskTrial, pattern_label
from jedi_rnn.models.task_teacher import TaskTeacherModule


def test_teacher_forward_is_the_leaky_tanh_update():
    m = TaskTeacherModule(n_inputs=2, n_outputs=1, n_units=5, alpha=0.2, seed=1).eval()
    u = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(0))
    states = m(u)
    J, W, b = m.J.detach().numpy(), m.W_in.detach().numpy(), m.b.detach().numpy()
    x = np.zeros((3, 5))
    for t in range(7):  # x_{t+1} = 0.8 x_t + 0.2 (J tanh x_t + W_in u_t + b)
        x = 0.8 * x + 0.2 * (np.tanh(x) @ J.T + u[:, t].numpy() @ W.T + b)
        np.testing.assert_allclose(states[:, t].detach().numpy(), x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.step(states[:, 2], u[:, 3]).detach().numpy(), states[:, 3].detach().numpy(), atol=1e-6)
    # process noise only in training mode, and seeded
    m.train()
    a = m(u, noise_std=0.1)
    assert not torch.allclose(a, states)


def test_masked_mse_closed_form():
    pred, target = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert TaskTeacherModule.masked_mse(pred, target, mask).item() == pytest.approx((1 + 0 + 16) / 3)


def test_teacher_learns_a_short_flipflop():
    dm = TaskDataModule(FlipFlop(n_steps=40, switch_prob=0.05, pulse_steps=5), n_train=64, n_val=16, batch_size=32, seed=0)
    dm.setup()
    m = TaskTeacherModule(**dm.dims, n_units=32, lr=1e-2, seed=0)
    opt = m.configure_optimizers()
    val = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        before = m.eval()._loss(val).item()
    m.train()
    for _ in range(15):
        for batch in dm.train_dataloader():
            loss = m._loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = m.eval()._loss(val).item()
    assert after < 0.6 * before


def test_cut_segments_crops_pads_and_checks_constancy():
    T, N = 30, 2
    clean = np.zeros((T, 1), np.float32)
    clean[10:20] = 1.0
    segs = [Segment(0, 10, "a"), Segment(10, 20, "b"), Segment(20, 23, "c")]
    tr = TaskTrial(clean, clean, clean, clean, segs)
    rates = np.arange(T * N, dtype=np.float32).reshape(1, T, N)
    out = cut_segments([tr], rates, segment_len=6, drop_steps=2, min_steps=1)
    assert out["labels"] == ["a", "b", "c"]
    np.testing.assert_array_equal(out["data"][0], rates[0, 2:8])
    np.testing.assert_array_equal(out["data"][1], rates[0, 12:18])
    np.testing.assert_array_equal(out["data"][2, :1], rates[0, 22:23])  # 1 step left after dropping 2
    assert np.isnan(out["data"][2, 1:]).all()
    np.testing.assert_array_equal(out["inputs"][:, 0], [0.0, 1.0, 0.0])
    assert cut_segments([tr], rates, segment_len=6, drop_steps=2, min_steps=3)["labels"] == ["a", "b"]
    bad = TaskTrial(clean, clean, clean, clean, [Segment(5, 15, "x")])
    with pytest.raises(ValueError, match="varying input"):
        cut_segments([bad], rates, 6, 0, 1)


def _bistable_teacher(gain: float = 2.0) -> TaskTeacherModule:
    """3 uncoupled bistable units (J = gain I, W_in = 4 I, b = 0): a hand-built flip-flop whose
    zero-input fixed points are known: x_k in {0, +-x*} with x* = gain tanh x*. Output k = rate k,
    so it reports the held bits."""
    m = TaskTeacherModule(n_inputs=3, n_outputs=3, n_units=3, alpha=0.2)
    with torch.no_grad():
        m.J.copy_(gain * torch.eye(3))
        m.W_in.copy_(4.0 * torch.eye(3))
        m.b.zero_()
        m.readout.weight.copy_(torch.eye(3))
        m.readout.bias.zero_()
    return m.eval().requires_grad_(False)


def _xstar(gain: float) -> float:
    x = 2.0
    for _ in range(200):  # fixed-point iteration of x = gain tanh x (a contraction near x*)
        x = gain * math.tanh(x)
    return x


def test_recordings_of_a_known_flipflop_teacher():
    teacher = _bistable_teacher()
    task = FlipFlop(n_steps=200, switch_prob=0.02, pulse_steps=5)
    rec = TaskTeacherRecordings({"teacher": teacher}, task, n_trials=6, segment_len=10, drop_steps=2, min_steps=5,
                                fixed_points={"n_inits": 64, "init_noise": 0.5, "max_iters": 3000}, seed=0)
    ts = rec()
    assert ts.data.shape[1:] == (10, 3) and ts.dt == task.dt
    assert set(ts.condition_names) <= {"+++", "++-", "+-+", "+--", "-++", "-+-", "--+", "---"}
    # each segment's activity sits in the orthant of its held pattern (the teacher did flip)
    for i in range(len(ts)):
        last = ts.data[i][~torch.isnan(ts.data[i]).any(1)][-1]
        assert "".join("+" if v > 0 else "-" for v in last) == ts.condition_names[int(ts.conditions[i])]
    np.testing.assert_array_equal(ts.extras["inputs"].numpy(), 0.0)
    # recorded rates are tanh of the teacher's states at the segment's steps
    trials, states = rec.record()
    i, a = int(ts.extras["trial"][0]), int(ts.extras["start"][0])
    n = int(ts.extras["length"][0])
    np.testing.assert_allclose(ts.data[0, :n].numpy(), np.tanh(states[i, a:a + n]), atol=1e-6)
    # ground truth per condition, searched from the condition's own states: the one stable corner
    # (+-x*, +-x*, +-x*) of its held pattern; every condition has the zero input
    xs = _xstar(2.0)
    for name in ts.condition_names:
        fp = teacher_fixed_points(ts.meta, name)
        stable = fp["x"][fp["stable"]]
        assert len(stable) == 1 and pattern_label(stable[0]) == name
        np.testing.assert_allclose(np.abs(stable), xs, atol=1e-4)
        np.testing.assert_array_equal(fp["input"], 0.0)
        np.testing.assert_allclose(fp["rates"], np.tanh(fp["x"]))
        # Jacobian at a corner is diagonal: 0.8 + 0.2 * gain * (1 - tanh^2 x*), three times
        np.testing.assert_allclose(np.abs(fp["eigenvalues"][fp["stable"]][0, :3]), 0.8 + 0.4 * (1 - math.tanh(xs) ** 2),
                                   atol=1e-5)
        # unstable points have a zero coordinate (the origin of a unit is unstable: 0.8 + 0.4 > 1)
        assert np.all(np.min(np.abs(fp["x"][~fp["stable"]]), axis=1) < 1e-4)
    # the hand-built flip-flop does its task on the recorded trials (its outputs are its rates)
    assert ts.meta["teacher_performance"]["bit_accuracy"] > 0.97
    with torch.no_grad():
        teacher.readout.weight.neg_()  # a readout reporting every bit inverted
    assert rec.teacher_performance(trials, states)["bit_accuracy"] < 0.03


def test_recordings_cache_key_tracks_the_teacher_and_datamodule_caches(tmp_path):
    teacher = _bistable_teacher()
    task = FlipFlop(n_steps=120, switch_prob=0.02, pulse_steps=5)
    kw = dict(n_trials=4, segment_len=8, min_steps=4, fixed_points={"n_inits": 16, "max_iters": 200}, seed=0)
    rec = TaskTeacherRecordings({"teacher": teacher}, task, **kw)
    other = TaskTeacherRecordings({"teacher": _bistable_teacher(gain=2.5)}, task, **kw)
    assert rec.cache_key() == TaskTeacherRecordings({"teacher": _bistable_teacher()}, task, **kw).cache_key()
    assert rec.cache_key() != other.cache_key() and module_hash(teacher) != module_hash(other.teacher)
    from functools import partial
    dm = TaskRecordingsDataModule({"teacher": teacher}, partial(TaskTeacherRecordings, task=task, **kw),
                                  batch_size=8, cache=DiskCache(tmp_path), split=[0.5, 0.25, 0.25])
    dm.setup()
    assert len(list(tmp_path.glob("TaskTeacherRecordings-*.npz"))) == 1
    again = TaskRecordingsDataModule({"teacher": teacher}, partial(TaskTeacherRecordings, task=task, **kw),
                                     batch_size=8, cache=DiskCache(tmp_path), split=[0.5, 0.25, 0.25])
    again.setup()  # read back from the cache: same data and the fixed points survive the round trip
    assert torch.equal(again.full_set.data.nan_to_num(7.0), dm.full_set.data.nan_to_num(7.0))
    name = dm.full_set.condition_names[0]
    np.testing.assert_allclose(teacher_fixed_points(again.full_set.meta, name)["x"],
                               teacher_fixed_points(dm.full_set.meta, name)["x"])
    with pytest.raises(ValueError, match="teacher"):
        TaskTeacherRecordings({}, task)


def test_perturbation_trials_kick_the_memory_epoch_and_leave_the_task_trials_and_ground_truth_alone():
    teacher = _bistable_teacher()  # inputs (fixation, cos, sin) drive units 0, 1, 2; units 1, 2 hold their sign
    task = MemoryPro(input_noise=0.0, memory_ms=(1600, 1600))  # 80 memory steps: a kicked unit relaxes back
    kw = dict(n_trials=8, segment_len=80, drop_steps=1, min_steps=5,
              fixed_points={"n_inits": 16, "init_noise": 0.1, "max_iters": 500}, seed=3)
    plain = TaskTeacherRecordings({"teacher": teacher}, task, **kw)()
    kicked_rec = TaskTeacherRecordings({"teacher": teacher}, task, **kw,
                                       perturbation={"n_trials": 16, "epoch": "memory", "std": 0.3})
    kicked = kicked_rec()
    # the task trials, their segments and the ground truth are those of the recording without perturbations
    mine = ~kicked.extras["perturbed"]
    np.testing.assert_array_equal(kicked.extras["trial"][mine].numpy(), plain.extras["trial"].numpy())
    assert torch.equal(kicked.data[mine].nan_to_num(7.0), plain.data.nan_to_num(7.0))
    np.testing.assert_array_equal(kicked.extras["perturbed"].numpy(), kicked.extras["trial"].numpy() >= 8)
    for key in ("teacher_fp_x", "teacher_fp_stable", "teacher_fp_condition"):
        np.testing.assert_array_equal(kicked.meta[key], plain.meta[key])
    assert kicked.meta["teacher_performance"] == plain.meta["teacher_performance"]
    # perturbation trials against the same trials unperturbed (a plain recording of all 24 trials)
    trials, x_kicked = kicked_rec.record()
    _, x_plain = TaskTeacherRecordings({"teacher": teacher}, task, **{**kw, "n_trials": 24}).record()
    first_diff, settled = [], []
    for i in range(8, 24):
        onset = next(g.start for g in trials[i].segments if g.label.startswith("memory/"))
        np.testing.assert_array_equal(x_kicked[i, :onset], x_plain[i, :onset])  # untouched before the onset
        # one step after a kick k on a unit at x: dx = 0.8 k + 0.2 * 2 (tanh(x + k) - tanh x)
        first_diff.append(x_kicked[i, onset] - x_plain[i, onset])
        held = np.abs(x_plain[i, onset - 1]) > 1.0  # units sitting in a memory attractor at the onset
        settled.append(np.abs(x_kicked[i, onset + 79] - x_plain[i, onset + 79])[held])
    assert 0.15 < np.std(first_diff) < 0.35  # ~0.85 x std for units at x* ~ 1.9 (tanh' ~ 0.12), more near 0
    assert np.concatenate(settled).max() < 1e-3  # ... and fall back to the same attractor
    for bad, match in (({"n_trials": 2, "epoch": "delay", "std": 0.1}, "perturbation.epoch='delay'.*memory"),
                       ({"n_trials": 2, "epoch": "memory"}, "needs n_trials, epoch, std"),
                       ({"n_trials": 2, "epoch": "memory", "std": 0.0}, "std > 0")):
        with pytest.raises(ValueError, match=match):
            TaskTeacherRecordings({"teacher": teacher}, task, **kw, perturbation=bad)
    # a kick 40 steps into the memory epoch splits its segment there: the same condition, twice
    late = TaskTeacherRecordings({"teacher": teacher}, task, **kw,
                                 perturbation={"n_trials": 16, "epoch": "memory", "std": 0.3, "offset": 40})
    trials, x_late = late.record()
    for i in range(8, 24):
        memory = [g for g in trials[i].segments if g.label.startswith("memory/")]
        assert len(memory) == 2 and memory[0].label == memory[1].label and memory[1].start == memory[0].start + 40
        np.testing.assert_array_equal(x_late[i, :memory[1].start], x_plain[i, :memory[1].start])
        assert not np.allclose(x_late[i, memory[1].start], x_plain[i, memory[1].start])
    ts = late()
    n_memory = [sum(ts.condition_names[int(c)].startswith("memory/") for c, t in zip(ts.conditions, ts.extras["trial"])
                    if int(t) == i) for i in (0, 8)]
    assert n_memory == [1, 2]
    with pytest.raises(ValueError, match="perturbation.offset=80 steps is not inside the memory epoch"):
        TaskTeacherRecordings({"teacher": teacher}, task, **kw,
                              perturbation={"n_trials": 2, "epoch": "memory", "std": 0.3, "offset": 80}).record()
