"""Out-of-core trials: an HDF5 recordings file read lazily gives the same batches as the trials in
memory (with and without loader workers), a truncated or half-written file names the file and the
trial, and the writer's CLI writes a teacher's recordings."""
import pickle

import h5py
import numpy as np
import pytest
import torch

from jedi_rnn.data.h5trials import LazyTrialSet, main, open_h5_trials, write_trialset
from jedi_rnn.data.recordings import LazyRecordingFile, recording_file
from jedi_rnn.data.teachers import SyntheticTeacher
from jedi_rnn.data.trials import TrialDataModule

TINY = dict(n_units=12, trials_per_condition=8, frequencies=[1, 2, 3], warmup_s=0.1, duration_s=0.2, seed=5)


def _batches(loader, epoch=0):
    for s in (loader.sampler, loader.batch_sampler):
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
    return [(b.index.clone(), b.condition.clone(), b.data.clone()) for b in loader]


def _same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)


@pytest.mark.parametrize("workers", [0, 2])
def test_lazy_file_gives_the_same_batches_as_the_trials_in_memory(tmp_path, workers):
    teacher = SyntheticTeacher(**TINY)
    path = write_trialset(teacher(), tmp_path / "rec.h5")
    kw = dict(batch_size=5, seed=3, heldout_conditions=["2Hz"])
    memory = TrialDataModule(SyntheticTeacher(**TINY), **kw)
    lazy = TrialDataModule(recording_file(str(path)), num_workers=workers, **kw)
    memory.setup(), lazy.setup()
    assert isinstance(lazy.full_set, LazyTrialSet) and lazy.dims == memory.dims
    for epoch in (0, 1):  # the epoch-seeded shuffle reads the same trials in the same order
        _same(_batches(lazy.train_dataloader(), epoch), _batches(memory.train_dataloader(), epoch))
    _same(_batches(lazy.val_dataloader()), _batches(memory.val_dataloader()))
    for a, b in zip(lazy.test_dataloader(), memory.test_dataloader()):
        _same(_batches(a), _batches(b))


def test_lazy_set_holds_no_trial_data(tmp_path):
    """What a loader worker receives (the pickled dataset) does not grow with the trials in the file."""
    sizes = []
    for n in (10, 1000):
        ts = SyntheticTeacher(**{**TINY, "trials_per_condition": 1})()
        data = ts.data.repeat(n // 3 + 1, 1, 1)[:n]
        ts = type(ts)(data, torch.zeros(n, dtype=torch.long), ["a"], ts.dt)
        lazy = open_h5_trials(write_trialset(ts, tmp_path / f"r{n}.h5"))
        _ = lazy.data[0]  # opens the file in this process; the handle must not travel
        sizes.append(len(pickle.dumps(lazy)))
    # 990 more int64 row numbers, labels and chunk offsets (~24 kB), not 990 trials of 20 x 12 floats (~950 kB)
    assert sizes[1] - sizes[0] < 40 * 990


def test_truncated_file_names_the_file_and_the_first_lost_trial(tmp_path):
    ts = SyntheticTeacher(**TINY)()
    path = write_trialset(ts, tmp_path / "rec.h5")
    cut = int(path.stat().st_size * 0.6)
    with h5py.File(path, "r") as f:  # the first trial whose chunk ends beyond the cut
        d = f["rates"]
        ends = [d.id.get_chunk_info(i).byte_offset + d.id.get_chunk_info(i).size for i in range(d.shape[0])]
    first_lost = next(i for i, e in enumerate(ends) if e > cut)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match=rf"rec.h5: trial {first_lost} of 'rates' lies past the end of the file"):
        LazyRecordingFile(str(path))()


def test_half_written_file_names_the_first_trial_never_written(tmp_path):
    path = tmp_path / "half.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("rates", shape=(6, 4, 3), dtype="f4", chunks=(1, 4, 3))
        d[:4] = np.ones((4, 4, 3))
        f["condition"], f["dt"] = np.zeros(6, int), 0.01
    with pytest.raises(ValueError, match=r"half.h5: trial 4 of 'rates' was never written"):
        open_h5_trials(path)


def test_reading_a_trial_with_inf_names_the_file_and_the_trial(tmp_path):
    ts = SyntheticTeacher(**TINY)()
    ts.data[7, 3, 2] = float("inf")
    lazy = open_h5_trials(write_trialset(ts, tmp_path / "rec.h5"))
    assert torch.equal(lazy.data[6], ts.data[6])
    with pytest.raises(ValueError, match=r"rec.h5: trial 7 of 'rates' contains inf"):
        lazy.data[7]


def test_writer_cli_writes_a_teachers_recordings(tmp_path, capsys):
    out = tmp_path / "teacher.h5"
    main(["jedi_rnn.data.teachers.SyntheticTeacher", str(out), "n_units=12", "trials_per_condition=8",
          "frequencies=[1, 2, 3]", "warmup_s=0.1", "duration_s=0.2", "seed=5"])
    expected = SyntheticTeacher(**TINY)()
    lazy = open_h5_trials(out)
    assert torch.equal(lazy.data[:], expected.data) and torch.equal(lazy.conditions, expected.conditions)
    assert lazy.condition_names == expected.condition_names and lazy.dt == expected.dt
    assert "wrote 24 trials" in capsys.readouterr().out


def test_recordings_run_trains_from_an_hdf5_file_end_to_end(compose_cfg, tmp_path):
    import json
    from pathlib import Path

    from experiments.glue.run import run_task, train

    path = write_trialset(SyntheticTeacher(**TINY)(), tmp_path / "rec.h5")
    cfg = compose_cfg(["data=jedi/recordings", f"data.source.path={path}", "data.batch_size=8",
                       "model.infer.steps=2", "model.infer.val_steps=1", "trainer.max_epochs=1"])
    run_task(train, cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "completed" and np.isfinite(saved["test/r2"])


def test_compressed_file_is_read_through_h5py_with_the_same_values(tmp_path):
    ts = SyntheticTeacher(**TINY)()
    raw = open_h5_trials(write_trialset(ts, tmp_path / "raw.h5"))
    packed = open_h5_trials(write_trialset(ts, tmp_path / "gzip.h5", compression="gzip"))
    assert raw.data.raw_offsets is not None and packed.data.raw_offsets is None
    assert torch.equal(raw.data[:], ts.data) and torch.equal(packed.data[:], ts.data)
