"""One-step runs of experiment=jedi/monkey_reach through the framework on each data source, and the
fetch command's offline behaviour."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from experiments import fetch
from experiments.glue.run import train
from tests.jedi.monkey.reach_files import write_mc_maze_nwb, write_trialdata_mat

TINY = ["experiment=jedi/monkey_reach_demo", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1",
        "model.latent_dim=8", "model.hypernet.hidden_dim=16", "model.infer.steps=2", "model.infer.val_steps=1",
        "analysis.reach_phases.burn_in=2", "analysis.reach_phases.n_steps=5", "callbacks=none"]


def _run(compose_cfg, overrides):
    cfg = compose_cfg(TINY + overrides)
    metrics = train(cfg)
    return cfg, metrics


def _check(cfg, metrics, n_prep, nlb=True):
    assert metrics["analysis/reach/n_contexts_prep"] == n_prep
    assert "test/r2" in metrics and "val/r2" in metrics
    nlb_keys = {"analysis/nlb/co_bps", "analysis/nlb/vel_r2", "analysis/nlb/psth_r2"}
    assert nlb_keys <= set(metrics) if nlb else not nlb_keys & set(metrics)
    assert (Path(cfg.paths.output_dir) / "figures" / "reach_phases.png").exists()


def test_monkey_reach_on_the_surrogate(compose_cfg):
    cfg, metrics = _run(compose_cfg, ["data.source.trials_per_target=7", "data.source.n_neurons=12",
                                      "data.source.n_heldout=3"])
    assert cfg.data.source._target_.endswith("SurrogateReach")
    assert "data=jedi_rnn.data.surrogate_reach.SurrogateReach" in cfg.tags
    _check(cfg, metrics, n_prep=8 * 5)  # 7 trials per (phase, target): 5 train


def test_monkey_reach_mse_route_on_scaled_rates(compose_cfg):
    cfg, metrics = _run(compose_cfg, ["data.source.trials_per_target=7", "data.source.n_neurons=12",
                                      "data.source.n_heldout=3", "loss=mse", "model.latent_dim=null",
                                      "model.init_state=data", "model.infer.split=none", "data.source.output=rates",
                                      "data.source.smooth_sigma=0.05"])
    _check(cfg, metrics, n_prep=8 * 5, nlb=False)  # NLB scores need spike counts: skipped


def test_monkey_reach_on_an_mc_maze_nwb_file(compose_cfg, tmp_path):
    trials = [(1 + i % 2, 0, "train", 0.5 + 0.01 * i) for i in range(14)]
    path = tmp_path / "maze.nwb"
    write_mc_maze_nwb(path, trials=trials)
    cfg, metrics = _run(compose_cfg, ["data=jedi/mc_maze", f"data.source.path={path}",
                                      "model.infer.heldout_neurons=0.3333"])
    _check(cfg, metrics, n_prep=2 * 5)


def test_monkey_reach_on_a_trialdata_file(compose_cfg, tmp_path):
    path = tmp_path / "td.mat"
    write_trialdata_mat(path, n_trials=30)  # 28 baseline trials, 7 per target
    cfg, metrics = _run(compose_cfg, ["data=jedi/trialdata", f"data.source.path={path}", "data.source.n_heldout=2",
                                      "data.source.min_rate_hz=0"])
    _check(cfg, metrics, n_prep=4 * 5)


@pytest.mark.skipif(importlib.util.find_spec("dandi") is not None, reason="dandi installed: would download")
def test_fetch_without_dandi_says_how_to_install(capsys, tmp_path):
    assert fetch.main(["mc_maze", "--dest", str(tmp_path)]) == 2
    assert "pip install dandi" in capsys.readouterr().err
    assert fetch.train_file(tmp_path, "mc_maze").name == "sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb"
