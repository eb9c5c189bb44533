"""W&B sweeps (`python -m experiments.sweep ... hparams_search=wandb_<name>`): the sweep config, the local
sampler that stands in offline, and a 3-trial offline sweep whose trials are ordinary training runs."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from experiments.glue.sweep_space import SearchSpaceError, check_local, hydra_override, local_trials, sweep_config
from experiments.glue.wandb_sweep import agent_params
from experiments.sweep import trial_overrides
from tests.conftest import ROOT
from tests.experiments.test_train import TINY_JEDI
from tests.experiments.wandb_reader import run_contents

SOURCE = "configs/hparams_search/wandb_jedi.yaml"


def test_random_sampler_is_seeded_and_draws_each_distribution():
    space = {"method": "random", "run_cap": 4000, "parameters": {
        "model.embedding_dim": {"values": [2, 4, 8]}, "trainer.max_epochs": {"min": 3, "max": 5},
        "model.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "model.weight_decay": {"min": 0.0, "max": 0.5}, "data.batch_size": {"value": 16}}}
    check_local(space, SOURCE)
    trials = local_trials(space, seed=3)
    assert trials == local_trials(space, seed=3) and trials != local_trials(space, seed=4)
    assert len(trials) == 4000
    dims = [t["model.embedding_dim"] for t in trials]
    epochs = [t["trainer.max_epochs"] for t in trials]
    assert set(dims) == {2, 4, 8} and set(epochs) == {3, 4, 5} and all(isinstance(e, int) for e in epochs)
    assert {t["data.batch_size"] for t in trials} == {16}
    # log-uniform: log(lr) is uniform on [log 1e-4, log 1e-2], mean at log 1e-3, sd (log 100)/sqrt(12)
    logs = np.log([t["model.lr"] for t in trials])
    assert logs.min() >= math.log(1e-4) and logs.max() <= math.log(1e-2)
    assert abs(logs.mean() - math.log(1e-3)) < 4 * math.log(100) / math.sqrt(12 * 4000)
    decay = np.array([t["model.weight_decay"] for t in trials])  # min/max floats: uniform, mean 0.25
    assert abs(decay.mean() - 0.25) < 4 * 0.5 / math.sqrt(12 * 4000)


def test_grid_is_the_product_in_key_order_up_to_run_cap():
    space = {"method": "grid", "parameters": {"a": {"values": [1, 2]}, "b": {"values": ["x", "y", "z"]},
                                              "c": {"value": 0.5}}}
    expected = [{"a": a, "b": b, "c": 0.5} for a, b in [(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]]
    assert local_trials(space, seed=0) == expected
    assert local_trials({**space, "run_cap": 4}, seed=0) == expected[:4]


def test_sweep_config_takes_the_metric_and_names_a_bad_key(compose_cfg):
    cfg = compose_cfg(["experiment=jedi/multifreq_demo", "hparams_search=wandb_jedi"])
    config = sweep_config(cfg, SOURCE)
    assert config["metric"] == {"name": "val/r2", "goal": "maximize"}
    assert config["method"] == "random" and set(config["parameters"]) == {
        "model.embedding_dim", "model.hypernet.hidden_dim", "model.lr"}
    bad = [({"parameters": {"model.embeding_dim": {"values": [2]}}}, "wandb_sweep.parameters.model.embeding_dim"),
           ({"method": "hyperband"}, "grid, random, bayes"),
           ({"method": "grid"}, "wandb_sweep.parameters.model.lr (configs/hparams_search/wandb_jedi.yaml): a grid needs `values`"),
           ({"run_cap": None}, "wandb_sweep.run_cap")]
    space = OmegaConf.to_container(cfg.wandb_sweep)
    for change, message in bad:
        with open_dict(cfg):
            cfg.wandb_sweep = {**space, **change}
        with pytest.raises(SearchSpaceError) as err:
            sweep_config(cfg, SOURCE)
        assert message in str(err.value) and SOURCE in str(err.value)
    with pytest.raises(SearchSpaceError, match="q_log_uniform_values.*local sampler"):
        check_local({"parameters": {"model.lr": {"distribution": "q_log_uniform_values", "min": 1, "max": 9}}}, SOURCE)


def test_agent_parameters_become_the_same_values_as_hydra_overrides(tmp_path):
    from wandb.sdk.lib.config_util import save_config_file_from_dict
    sent = {"model.embedding_dim": 4, "model.lr": 0.00125, "model": "jedi/jedi_fullrank", "tags": ["a", "b c"],
            "model.hypernet.activation": "leaky relu", "analyze": False, "ckpt_path": None, "task_name": "2",
            "model.weight_decay": 1e-05, "data.source.note": "it's"}
    param_file = tmp_path / "config-abc.yaml"  # the file wandb.agent writes for a trial
    save_config_file_from_dict(str(param_file), {k: {"value": v} for k, v in sent.items()})
    received = agent_params(str(param_file))
    assert received == sent
    parser = OverridesParser.create()
    for key, value in received.items():
        override = parser.parse_override(hydra_override(key, value))
        assert override.key_or_group == key and override.value() == value


def test_trials_get_the_command_line_without_the_sweep_keys():
    hydra_cfg = OmegaConf.create({"overrides": {
        "task": ["experiment=jedi/multifreq_demo", "hparams_search=wandb_jedi", "wandb_sweep.run_cap=3",
                 "~wandb_sweep.parameters", "+wandb_sweep.parameters={a:{values:[1]}}", "sweep_seed=2",
                 "model.lr=0.01", "hparams_search_note=x"],
        "hydra": ["hydra.run.dir=/tmp/s", "hydra.searchpath=[file:///x]", "hydra.sweep.dir=/tmp/m"]}})
    assert trial_overrides(hydra_cfg) == ["experiment=jedi/multifreq_demo", "model.lr=0.01", "hparams_search_note=x",
                                          "hydra.searchpath=[file:///x]"]


@pytest.mark.wandb
def test_offline_sweep_runs_three_trials_and_goes_on_past_a_failing_one(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # a grid over three values, the second of which the config validation rejects
    args = [*TINY_JEDI, "trainer.max_epochs=1", "logger=wandb", "callbacks=none", "analyze=false", "test=false",
            "extras.print_config=false", "trainer.enable_progress_bar=false", "hparams_search=wandb_jedi",
            "wandb_sweep.method=grid", "~wandb_sweep.parameters",
            "+wandb_sweep.parameters={model.embedding_dim:{values:[2,0,4]}}", f"hydra.run.dir={sweep_dir}",
            "model.embedding_dim=8"]  # a fixed value of a swept key gives way to each trial's
    # W&B configured but unreachable (nothing listens on the discard port): the sweep goes offline at once
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROJECT_ROOT": str(ROOT), "DATA_DIR": str(tmp_path / "data"),
           "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    env.pop("WANDB_MODE", None)
    res = subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]

    assert "the local sampler (grid, seed 1234) stands in" in res.stderr + res.stdout
    written = OmegaConf.to_container(OmegaConf.load(sweep_dir / "sweep.yaml"))
    assert written["method"] == "grid" and written["metric"] == {"name": "val/r2", "goal": "maximize"}
    assert written["parameters"] == {"model.embedding_dim": {"values": [2, 0, 4]}}
    trials = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [t.name for t in trials] == ["0", "1", "2"]
    records = [json.loads((t / "metrics.json").read_text()) for t in trials]
    assert [r["status"] for r in records] == ["completed", "failed", "completed"]
    assert "model.embedding_dim must be an integer >= 1, got 0" in records[1]["error"]
    for trial, dim in zip(trials, [2, 0, 4]):
        overrides = (trial / ".hydra" / "overrides.yaml").read_text()
        assert f"model.embedding_dim={dim}" in overrides and "model.embedding_dim=8" not in overrides
        (offline,) = (trial / "wandb").glob("offline-run-*")  # one offline W&B run per trial
        assert offline.name.endswith((trial / "wandb_id.txt").read_text().strip())
        run = run_contents(next(offline.glob("run-*.wandb")))
        assert run["summary"]["status"] == records[int(trial.name)]["status"]
        logged = run["config"]["model.embedding_dim"] if dim == 0 else run["config"]["model"]["embedding_dim"]
        assert logged == dim  # the failed trial's run (recorded by the sweep) holds its parameters
    assert run_contents(next((trials[0] / "wandb").glob("offline-run-*/run-*.wandb")))["summary"]["val/r2"] == \
        pytest.approx(records[0]["val/r2"])
    summary = (sweep_dir / "sweep_summary.md").read_text()
    assert "| 1 | failed |" in summary and "| 0 | completed |" in summary and "| 2 | completed |" in summary
