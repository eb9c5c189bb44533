"""The one cache (experiments.glue.cache): stable keys, atomic writes, corrupt entries rebuilt, one build
for runs started together, and the trial sets and pose pools kept in its layout."""
from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
import pytest

from experiments.glue.cache import DiskCache, atomic_write, config_hash


def test_keys_are_stable_and_follow_every_field(tmp_path):
    key = {"n_units": 20, "frequencies": [1, 2], "style": {"noise": 0.1}}
    same = {"style": {"noise": 0.1}, "frequencies": [1, 2], "n_units": 20}  # other order, same config
    assert config_hash(key) == config_hash(same)
    # the format of existing entries: the first 16 hex digits of the SHA-256 of the sorted JSON
    assert config_hash({"b": 1, "a": [2]}) == hashlib.sha256(b'{"a": [2], "b": 1}').hexdigest()[:16]
    changed = [{**key, "n_units": 21}, {**key, "frequencies": [1, 3]}, {**key, "style": {"noise": 0.2}},
               {**key, "seed": 0}]
    assert len({config_hash(k) for k in [key, *changed]}) == 5
    cache = DiskCache(tmp_path)
    assert cache.path("posedistill/target", key, ".npz") == tmp_path / "posedistill" / f"target-{config_hash(key)}.npz"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path, "w") as f:
            f.write("half of the new cont")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with atomic_write(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_an_entry_whose_save_fails_is_not_kept_and_is_built_next_time(tmp_path):
    cache = DiskCache(tmp_path)
    path = cache.path("pool", {"n": 3}, ".npz")

    def failing_save(value, f):
        f.write(b"PK\x03\x04 partial zip")
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        cache.get_or_build(path, np.load, lambda: np.arange(3), failing_save)
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))
    built = cache.arrays("pool", {"n": 3}, lambda: {"x": np.arange(3)})
    np.testing.assert_array_equal(built["x"], np.arange(3))
    assert path.exists()


def test_a_truncated_entry_is_rebuilt_with_a_warning(tmp_path, caplog):
    cache, builds = DiskCache(tmp_path), []

    def build():
        builds.append(1)
        return {"poses": np.linspace(0, 1, 1000).reshape(10, 100), "action": np.arange(10)}

    first = cache.arrays("posedistill/sequences", {"n": 10}, build)
    again = cache.arrays("posedistill/sequences", {"n": 10}, build)
    assert len(builds) == 1  # the second call read the entry
    path = cache.path("posedistill/sequences", {"n": 10}, ".npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="experiments.glue.cache"):
        rebuilt = cache.arrays("posedistill/sequences", {"n": 10}, build)
    assert len(builds) == 2
    assert any("unusable" in r.message and path.name in r.message for r in caplog.records)
    for value in (again, rebuilt, cache.arrays("posedistill/sequences", {"n": 10}, build)):
        np.testing.assert_array_equal(value["poses"], first["poses"])
    assert len(builds) == 2  # the rebuilt entry is whole again


def test_an_entry_that_fails_to_decode_is_rebuilt(tmp_path):
    cache = DiskCache(tmp_path)
    cache.arrays("trials", {"v": 1}, lambda: {"old_layout": np.zeros(2)})  # written by older code

    def decode(arrays):
        return arrays["data"]  # KeyError on the old layout

    value = cache.arrays("trials", {"v": 1}, lambda: np.ones(3), encode=lambda v: {"data": v}, decode=decode)
    np.testing.assert_array_equal(value, np.ones(3))
    np.testing.assert_array_equal(cache.arrays("trials", {"v": 1}, lambda: None, decode=decode), np.ones(3))


def _ask_slowly(root: str, marker: str, out: str) -> None:
    """One run asking for the entry: building takes a while and appends a line to ``marker``."""
    import time

    def build():
        with open(marker, "a") as f:
            f.write("built\n")
        time.sleep(1.0)  # a run started meanwhile must wait for this build, not build too
        return {"weights": np.arange(5.0)}

    value = DiskCache(root).arrays("stages/prior", {"seed": 0}, build)
    np.save(out, value["weights"])


def test_runs_started_together_build_an_entry_once(tmp_path):
    import multiprocessing as mp

    marker = tmp_path / "builds.log"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ask_slowly, args=(str(tmp_path / "cache"), str(marker), str(tmp_path / f"run{i}.npy")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert marker.read_text() == "built\n"
    for i in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"run{i}.npy"), np.arange(5.0))


def test_trial_sets_live_in_the_cache_layout(tmp_path, caplog):
    import torch

    from jedi_rnn.data.teachers import SyntheticTeacher
    from jedi_rnn.data.trials import TrialDataModule

    teacher = SyntheticTeacher(n_units=6, trials_per_condition=3, frequencies=[1, 2], warmup_s=0.1, duration_s=0.1)
    cache = DiskCache(tmp_path)
    dm = TrialDataModule(teacher, cache=cache)
    dm.prepare_data()
    entry = cache.path("SyntheticTeacher", teacher.cache_key(), ".npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry.name, entry.name + ".lock"]
    entry.write_bytes(entry.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="experiments.glue.cache"):
        dm.setup()
    assert any("unusable" in r.message for r in caplog.records)
    assert torch.equal(dm.full_set.data, teacher().data)
    plain = TrialDataModule(teacher)  # no cache: generated in memory
    plain.setup()
    assert torch.equal(plain.full_set.data, dm.full_set.data)


def test_pose_pools_live_in_the_cache_layout(tmp_path):
    from posedistill.data.pools import sequence_pool

    cache = DiskCache(tmp_path)
    pool = sequence_pool(2, 4, seed=0, cache=cache)
    (entry,) = (tmp_path / "posedistill").glob("*.npz")
    assert re.fullmatch(r"sequences-[0-9a-f]{16}\.npz", entry.name)
    assert (tmp_path / "posedistill" / (entry.name + ".lock")).exists()
    entry.write_bytes(b"")  # an empty file from a crashed older writer
    again = sequence_pool(2, 4, seed=0, cache=cache)
    np.testing.assert_array_equal(again["poses"], pool["poses"])
    np.testing.assert_array_equal(sequence_pool(2, 4, seed=0)["poses"], pool["poses"])  # no cache: same pool
