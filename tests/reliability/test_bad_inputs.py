"""Bad data files, bad configs, corrupt checkpoints, unwritable outputs and an unreachable W&B give
one clear error naming the file/field/key, before any training starts."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from experiments.glue import logging_setup
from experiments.glue.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from experiments.glue.config import one_line_errors
from experiments.glue.run import check_writable, run_task, train
from experiments.glue.schemas import ConfigError, validate
from jedi_rnn.data.recordings import RecordingFile
from tests.conftest import ROOT
from tests.experiments.test_train import TINY_JEDI


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _good(n=12, T=20, K=5):
    rng = np.random.default_rng(0)
    return {"rates": rng.uniform(-0.5, 0.5, (n, T, K)).astype(np.float32),
            "condition": np.repeat(np.arange(3), n // 3), "dt": np.asarray(0.01)}


def test_good_recordings_file_loads_in_both_formats(tmp_path):
    ts = RecordingFile(str(_write_npz(tmp_path / "r.npz", **_good())))()
    assert ts.data.shape == (12, 20, 5) and ts.condition_names == ["0", "1", "2"] and ts.dt == 0.01
    with h5py.File(tmp_path / "r.h5", "w") as f:
        for k, v in _good().items():
            f[k] = v
    assert torch.equal(RecordingFile(str(tmp_path / "r.h5"))().data, ts.data)


@pytest.mark.parametrize("case, message", [
    ("truncated_npz", "r.npz: cannot be read, the file is truncated or corrupt"),
    ("truncated_h5", "r.h5: cannot be read, the file is truncated or corrupt"),
    ("no_rates", "array 'rates' is missing"),
    ("wrong_shape", "array 'rates' must be (trials, time, neurons)"),
    ("wrong_dtype", "array 'rates' must be numeric"),
    ("condition_length", "array 'condition' must be (12,)"),
    ("nan_spikes", "array 'spikes' contains NaN"),
    ("all_nan_trial", "entirely NaN"),
    ("no_dt", "array 'dt' is missing"),
])
def test_bad_recordings_name_the_file_and_array(tmp_path, case, message):
    good = _good()
    if case == "truncated_npz":
        path = _write_npz(tmp_path / "r.npz", **good)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "truncated_h5":
        path = tmp_path / "r.h5"
        with h5py.File(path, "w") as f:
            f["rates"] = good["rates"]
        path.write_bytes(path.read_bytes()[:1000])
    else:
        arrays = dict(good)
        if case == "no_rates":
            arrays["rate"] = arrays.pop("rates")
            kw = {"array": "rates"}
        if case == "wrong_shape":
            arrays["rates"] = arrays["rates"][:, :, 0]
        if case == "wrong_dtype":
            arrays["rates"] = np.full((12, 20, 5), "x")
        if case == "condition_length":
            arrays["condition"] = arrays["condition"][:-1]
        if case == "nan_spikes":
            arrays["spikes"] = np.where(np.isnan(arrays.pop("rates")), 0, np.nan)
        if case == "all_nan_trial":
            arrays["rates"][3] = np.nan
        if case == "no_dt":
            arrays.pop("dt")
        path = _write_npz(tmp_path / "r.npz", **arrays)
    with pytest.raises((ValueError, KeyError)) as err:
        RecordingFile(str(path), **(kw if case == "no_rates" else {}))()
    assert message in str(err.value) and str(path.name) in str(err.value)


def test_bad_data_fails_before_training_starts(compose_cfg, tmp_path):
    path = _write_npz(tmp_path / "bad.npz", rates=np.zeros((6, 10, 3), np.float32), condition=np.zeros(5), dt=0.01)
    cfg = compose_cfg(["data=jedi/recordings", f"data.source.path={path}", "logger=none", "callbacks=none"])
    with pytest.raises(ValueError, match="bad.npz: array 'condition' must be"):
        run_task(train, cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.parametrize("override, message", [
    ("model.hypernet.rank=-1", "model.hypernet.rank must be an integer >= 1, got -1"),
    ("model.embedding_dim=0", "model.embedding_dim must be an integer >= 1, got 0"),
    ("model.lr=fast", "model.lr must be a number, got 'fast' (str)"),
    ("data.batch_size=2.5", "data.batch_size must be an integer, got 2.5 (float)"),
    ("+model.hypernet.rnak=3", "model.hypernet.rnak is not a key of jedi_rnn.models.hypernet.LowRankHypernet (valid keys: "),
    ("model.scheduler.final_fraction=1.5", "model.scheduler.final_fraction must be a number in [0, 1], got 1.5"),
    ("+model.optimizer.lr=0.1", "model.optimizer.lr must be left out: jedi_rnn.lit_module.JediModule sets each "
                                "parameter group's lr itself, from model.lr"),
    ("model.optimizer._target_=torch.optim.Adamm", "model.optimizer._target_ must name an importable class or "
                                                   "function, got 'torch.optim.Adamm'"),
])
def test_bad_config_values_are_rejected_naming_the_key(compose_cfg, override, message):
    cfg = compose_cfg(["experiment=jedi/multifreq_demo", override])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_more_heldout_conditions_than_exist_is_rejected(compose_cfg):
    names = ",".join(f"{f}Hz" for f in range(1, 11))
    cfg = compose_cfg([*TINY_JEDI, f"data.heldout_conditions=[{names}]"])
    with pytest.raises(ValueError, match="data.heldout_conditions holds out all 10 conditions"):
        run_task(train, cfg)


def test_unwritable_output_dir_fails_at_start(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permission bits
            blocker = tmp_path / "file"
            blocker.write_text("")
            target = blocker / "run"
        else:
            target = locked / "run"
        with pytest.raises(PermissionError, match=f"output dir {target} is not writable"):
            check_writable(target)
    finally:
        locked.chmod(0o700)


def test_checkpoints_are_atomic_and_corrupt_ones_are_reported(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 4}, path)
    assert load_checkpoint(path)["global_step"] == 4
    assert not list(tmp_path.glob("*.tmp"))  # no temporary left behind
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RuntimeError, match="last.ckpt could not be read .* truncated or corrupt"):
        load_checkpoint(path)


def test_corrupt_stage_checkpoint_is_retrained_not_used(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=jedi/flipflop", "size=tiny", "debug=fdr", "analyze=false"])
    cfg.paths.cache_dir = str(tmp_path / "own_cache")
    run_task(train, cfg)
    (ckpt,) = Path(cfg.paths.cache_dir).glob("stages/teacher-*/model.ckpt")
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    run_task(train, cfg)  # the half-written teacher is detected and retrained
    assert load_checkpoint(ckpt)["state_dict"]


def test_unreachable_wandb_falls_back_to_offline_quickly(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    assert logging_setup.decide_offline(None) is True
    assert time.monotonic() - start < 10
    assert logging_setup.decide_offline(False) is True  # online explicitly requested: still offline


def test_failing_sweep_job_is_listed_and_others_complete(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "DATA_DIR": str(tmp_path / "data")}
    args = [*TINY_JEDI, "trainer.max_epochs=1", "logger=none", "callbacks=none", "analyze=false",
            "extras.print_config=false", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}/logs",
            "model.hypernet.rank=5,-1"]  # the second job has an impossible value
    res = subprocess.run([sys.executable, "-m", "experiments.train", "-m", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    (sweep,) = (tmp_path / "logs").glob("*/multiruns/*")
    summary = (sweep / "sweep_summary.md").read_text()
    assert "| 0 | completed |" in summary and "| 1 | failed |" in summary, summary
    assert "model.hypernet.rank must be an integer >= 1" in summary
    assert res.returncode == 0, res.stderr[-2000:]


def _cli(module: str, args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "", **env}
    return subprocess.run([sys.executable, "-m", module, *args, "logger=none", f"paths.log_dir={tmp_path}/logs"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_bad_config_is_one_line_on_stderr_without_a_traceback(tmp_path):
    res = _cli("experiments.train", ["experiment=jedi/multifreq_demo", "model.hypernet.rank=-1"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip() == "config error: model.hypernet.rank must be an integer >= 1, got -1", res.stderr


def test_hydra_full_error_lets_the_error_through_for_its_traceback(monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Hydra then prints the whole traceback of what propagates
    with pytest.raises(ConfigError, match="model.hypernet.rank must be"), one_line_errors():
        raise ConfigError("model.hypernet.rank must be an integer >= 1, got -1")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "")
    with pytest.raises(SystemExit) as exit_, one_line_errors():
        raise KeyError("r.npz: array 'rates' is missing")
    assert exit_.value.code == 1 and capsys.readouterr().err == "error: r.npz: array 'rates' is missing\n"


def test_a_bad_data_file_is_one_line_naming_the_file(tmp_path):
    path = _write_npz(tmp_path / "bad.npz", rates=np.zeros((6, 10, 3), np.float32), condition=np.zeros(5), dt=0.01)
    res = _cli("experiments.train", ["data=jedi/recordings", f"data.source.path={path}", "callbacks=none"], tmp_path)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"error: {path}: array 'condition' must be (6,) to match 'rates', got (5,)"

