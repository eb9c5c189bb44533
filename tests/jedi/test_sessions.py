"""Multi-session JEDI: per-session read-in / read-out shapes, session-pure batches, per-session splits
that do not depend on the other sessions, a missing session file named before training, and a tiny
multi-session run end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.glue.run import run_task, train
from jedi_rnn.data.h5trials import write_trialset
from jedi_rnn.data.sessions import SessionBatchSampler, SessionFiles, SessionsDataModule, TeacherSessions
from jedi_rnn.data.teachers import SyntheticTeacher
from jedi_rnn.models.session_io import SessionReadIn, SessionReadOut

TINY_TEACHER = dict(n_units=16, frequencies=[1, 2], warmup_s=0.1, duration_s=0.2, seed=2)
TINY_SESSIONS = ["experiment=jedi/sessions", "data.source.teacher.n_units=16",
                 "data.source.teacher.warmup_s=0.1", "data.source.teacher.duration_s=0.2",
                 "data.source.sessions=[{name: a, n_neurons: 9, trials_per_condition: 10},"
                 "{name: small, n_neurons: 5, trials_per_condition: 5}]",
                 "data.batch_size=4", "model.latent_dim=6", "model.hypernet.hidden_dim=16", "model.infer.steps=3",
                 "model.infer.val_steps=2", "model.infer.n_centres=3", "trainer.max_steps=12",
                 "trainer.check_val_every_n_epoch=1", "trainer.deterministic=true", "callbacks=default"]


def test_read_in_and_read_out_map_each_session_to_its_own_neurons():
    read_in, read_out = SessionReadIn([5, 7], 4), SessionReadOut([5, 7], 4)
    frame = torch.randn(3, 7)
    assert read_in(1, frame).shape == (3, 4)
    assert read_out(0, torch.randn(3, 10, 4)).shape == (3, 10, 5)
    assert read_out(1, torch.randn(3, 10, 4)).shape == (3, 10, 7)
    # a missing (NaN) entry of the first frame reads in as 0
    frame[0, 2] = float("nan")
    torch.testing.assert_close(read_in(1, frame), read_in(1, torch.nan_to_num(frame)))
    with pytest.raises(RuntimeError):
        read_in(0, torch.randn(3, 7))  # session 0 has 5 neurons


def test_batches_hold_one_session_and_every_trial_once_per_epoch():
    session = torch.tensor([0] * 7 + [1] * 3 + [2] * 10)
    sampler = SessionBatchSampler(session, batch_size=4, shuffle=True, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 + 1 + 3
    assert all(len(set(session[b].tolist())) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(20))
    assert batches == list(sampler)  # same (seed, epoch): same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    # balanced: 3 batches of every session; the 3-trial session's batches are passes over its trials
    balanced = list(SessionBatchSampler(session, batch_size=4, shuffle=True, seed=1, balance=True))
    per = [[b for b in balanced if session[b[0]] == s] for s in range(3)]
    assert [len(p) for p in per] == [3, 3, 3] and all(sorted(b) == [7, 8, 9] for b in per[1])
    assert sorted(i for b in per[2] for i in b) == list(range(10, 20))


def _session_file(path: Path, n_neurons: int, seed: int) -> Path:
    ts = SyntheticTeacher(**{**TINY_TEACHER, "seed": seed}, trials_per_condition=6, n_observed=n_neurons)()
    return write_trialset(ts, path)


def test_a_sessions_split_does_not_depend_on_the_other_sessions(tmp_path):
    a, b = _session_file(tmp_path / "a.h5", 8, 0), _session_file(tmp_path / "b.h5", 5, 1)
    both = SessionsDataModule(SessionFiles([str(a), str(b)]), batch_size=4, seed=3, split=(0.5, 0.25, 0.25))
    alone = SessionsDataModule(SessionFiles([str(b)]), batch_size=4, seed=3, split=(0.5, 0.25, 0.25))
    both.setup(), alone.setup()
    assert both.dims["session_neurons"] == [8, 5] and alone.dims["session_neurons"] == [5]
    for split in ("train_set", "val_set", "test_set"):
        assert torch.equal(getattr(both, split).parts[1].data[:], getattr(alone, split).parts[0].data[:])


def test_missing_session_file_is_named_before_training(compose_cfg, tmp_path):
    good = _session_file(tmp_path / "good.h5", 6, 0)
    missing = tmp_path / "absent.h5"
    cfg = compose_cfg(["data=jedi/sessions", "model=jedi/multisession", f"data.source.paths=[{good},{missing}]"])
    with pytest.raises(FileNotFoundError, match=rf"data.source.paths\[1\]={missing}"):
        run_task(train, cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_teacher_sessions_observe_their_own_units_on_their_own_trials(tmp_path):
    teacher = SyntheticTeacher(**TINY_TEACHER)
    source = TeacherSessions(teacher, [{"name": "a", "n_neurons": 9, "trials_per_condition": 4},
                                       {"name": "b", "n_neurons": 5, "trials_per_condition": 2}], str(tmp_path), seed=0)
    (na, a), (nb, b) = source()
    assert (na, nb) == ("a", "b") and a.data.shape[::2] == (8, 9) and b.data.shape[::2] == (4, 5)
    assert torch.bincount(b.conditions).tolist() == [2, 2]
    # every session trial is one trial of the 6-per-condition teacher run seen through some of its
    # units (obs noise 0.02: within 0.1 of the unit's rate at every bin), and no trial is in two sessions
    rates = SyntheticTeacher(**TINY_TEACHER, trials_per_condition=6)().extras["latents"]  # (12, T, 16)
    matched = []
    for part in (a, b):
        x = part.data[:]
        for i in range(len(x)):
            dist = (rates[:, :, None, :] - x[i][None, :, :, None]).abs().amax(1)  # (trials, K_s, units)
            error = dist.amin(2).amax(1)  # (trials,): the worst neuron's distance to its closest unit
            assert error.min() < 0.1
            matched.append(int(error.argmin()))
    assert sorted(matched) == list(range(12))
    assert len(list(Path(tmp_path).glob("*.h5"))) == 2


def test_multisession_tiny_run_trains_end_to_end(compose_cfg):
    cfg = compose_cfg(TINY_SESSIONS)
    metrics = run_task(train, cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "completed"
    for key in ("test/r2_a", "test/r2_small", "test/r2", "val/r2"):
        assert np.isfinite(saved[key])
    assert metrics["test/r2"] == pytest.approx((metrics["test/r2_a"] + metrics["test/r2_small"]) / 2, abs=1e-6)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()
