"""The run contract end to end: one-step runs of every experiment, resume, sweeps, DDP, W&B."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from experiments.glue.checkpoint_io import load_checkpoint
from experiments.glue.run import run_task, train
from tests.conftest import CONFIG_DIR, ROOT

EXPERIMENTS = sorted(str(p.relative_to(Path(CONFIG_DIR) / "experiment").with_suffix(""))
                     for p in (Path(CONFIG_DIR) / "experiment").rglob("*.yaml"))
# experiments tagged `real` read user-supplied datasets; they run one step on tiny files written in
# those formats in tests/posedistill/test_crops.py
REAL_DATA = [e for e in EXPERIMENTS
             if "real" in OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "experiment" / f"{e}.yaml")).get("tags", [])]
TINY_JEDI = ["experiment=jedi/multifreq_demo", "data.source.trials_per_condition=5", "data.batch_size=16",
             "data.source.n_units=24", "data.source.duration_s=0.3", "data.source.warmup_s=0.2",
             "model.infer.steps=5", "model.infer.val_steps=2", "trainer.check_val_every_n_epoch=1"]


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e not in REAL_DATA])
def test_every_experiment_runs_one_step(compose_cfg, experiment):
    cfg = compose_cfg([f"experiment={experiment}", "size=tiny", "debug=fdr"])
    with open_dict(cfg):
        cfg.analyze = False
    metrics = run_task(train, cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "completed"
    assert any(k.startswith("test/") for k in metrics), metrics


def test_metrics_json_holds_final_val_and_test_metrics(compose_cfg):
    cfg = compose_cfg([*TINY_JEDI, "trainer.max_epochs=2", "callbacks=default", "~callbacks.rich_progress_bar"])
    metrics = run_task(train, cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for key in ("val/r2", "test/r2", "test/r2_heldout_cond", "test/r2_neuron_mean"):
        assert key in saved and saved[key] == pytest.approx(metrics[key])
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def _final_weights(cfg) -> dict:
    run_task(train, cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return load_checkpoint(ckpt)["state_dict"]


@pytest.mark.parametrize("table", [[], ["model.sparse_embeddings=true"]], ids=["dense_table", "sparse_table"])
def test_resume_from_last_ckpt_gives_the_same_final_weights(compose_cfg, tmp_path, table):
    common = [*TINY_JEDI, "callbacks=default", "~callbacks.rich_progress_bar", "trainer.deterministic=true",
              "test=false", "analyze=false", "model.scheduler=null", "logger=wandb", *table]  # a 2-epoch run has its own cosine
    full = _final_weights(compose_cfg([*common, "trainer.max_epochs=4"]))
    # an interrupted run (2 of 4 epochs) resumed from its last.ckpt ...
    cfg = compose_cfg([*common, "trainer.max_epochs=2"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "interrupted")
    HydraConfig.instance().set_config(cfg)
    run_task(train, cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    wandb_id = (Path(cfg.paths.output_dir) / "wandb_id.txt").read_text()
    cfg2 = compose_cfg([*common, "trainer.max_epochs=4", f"ckpt_path={last}"])
    resumed = _final_weights(cfg2)
    # the resumed run continued in the interrupted run's dir under the same W&B run id
    assert len(list((tmp_path / "interrupted" / "wandb").glob(f"offline-run-*-{wandb_id}*"))) == 2
    assert set(resumed) == set(full)
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], msg=f"parameter {k} differs after resume")


def _cli(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PROJECT_ROOT": str(ROOT),
           "DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "experiments.train", *args, f"paths.log_dir={tmp_path}/logs"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


CLI_TINY = [*TINY_JEDI, "trainer.max_epochs=1", "logger=none", "callbacks=none", "analyze=false",
            "extras.print_config=false", "trainer.enable_progress_bar=false"]


def test_runs_started_in_the_same_second_get_their_own_dirs():
    # one run per seed launched together must not share a dir: the second would resume the first
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    dirs = []
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for seed in (1, 2):
            cfg = compose(config_name="train", overrides=[f"seed={seed}", "paths.log_dir=/logs", "task_name=t"],
                          return_hydra_config=True)
            dirs.append(OmegaConf.select(cfg, "hydra.run.dir"))
    GlobalHydra.instance().clear()
    assert dirs[0] != dirs[1] and all(d.startswith("/logs/t/runs/") for d in dirs)


def test_multirun_gives_one_output_dir_per_job(tmp_path):
    res = _cli(["-m", *CLI_TINY, "model.embedding_dim=2,4"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted((tmp_path / "logs").glob("*/multiruns/*/[0-9]*"))
    assert len(jobs) == 2
    dims = []
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
        dims.append((job / ".hydra" / "overrides.yaml").read_text())
    assert any("embedding_dim=2" in d for d in dims) and any("embedding_dim=4" in d for d in dims)


def test_optuna_sweep_runs_two_trials(tmp_path):
    res = _cli(["hparams_search=jedi_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                *CLI_TINY], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = (tmp_path / "logs").glob("*/multiruns/*")
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in results and "model.embedding_dim" in results
    assert len(list(sweep.glob("[0-9]*/metrics.json"))) == 2


def test_unknown_override_value_lists_valid_options(tmp_path):
    res = _cli(["model=jedi/no_such_model", *CLI_TINY], tmp_path, timeout=120)
    assert res.returncode != 0
    assert "config error: model must be one of the options of the config group model, got 'jedi/no_such_model'" in res.stderr
    assert "jedi/jedi_lowrank" in res.stderr and "jedi/jedi_fullrank" in res.stderr
    res = _cli(["loss=nope", *CLI_TINY], tmp_path, timeout=120)
    assert res.returncode != 0 and "mse" in res.stderr and "poisson" in res.stderr


def test_ddp_on_two_cpu_processes_synchronises_metrics(compose_cfg):
    # fit + validation on two gloo ranks; rank-level metric synchronisation is checked exactly in
    # tests/jedi/test_r2_metrics.py. (A spawned test phase after the spawned fit aborted one rank on
    # the loaded CI machine: "terminate called without an active exception"; not covered here.)
    cfg = compose_cfg([*TINY_JEDI, "trainer=ddp_sim", "trainer.max_epochs=1", "analyze=false", "test=false",
                       "data.batch_size=8"])
    metrics = run_task(train, cfg)
    assert "val/r2" in metrics and torch.isfinite(torch.tensor(metrics["val/r2"]))


@pytest.mark.parametrize("overrides, head", [(["model=jedi/jedi_lowrank"], "LowRankHypernet"),
                                             (["model=jedi/jedi_fullrank"], "FullRankHypernet"),
                                             (["model/hypernet=fullrank"], "FullRankHypernet")])
def test_hypernetwork_heads_compose_and_the_experiment_reaches_them(compose_cfg, overrides, head):
    cfg = compose_cfg(["experiment=jedi/multifreq_demo", *overrides])
    assert cfg.model.hypernet._target_ == f"jedi_rnn.models.hypernet.{head}"
    assert cfg.model.scheduler.final_fraction == 0.05  # set by the experiment
    assert cfg.model.embedding_tie == "trial" and cfg.model.embedding_init == "pca"  # label-free, whatever the head


def test_full_rank_ablation_runs_one_step(compose_cfg):
    cfg = compose_cfg(["experiment=jedi/multifreq", "size=tiny", "model=jedi/jedi_fullrank", "debug=fdr"])
    with open_dict(cfg):
        cfg.analyze = False
    metrics = run_task(train, cfg)
    assert "test/r2" in metrics


def test_model_seed_override_alone_runs_with_a_logger(compose_cfg):
    # varying the initialisation while keeping the data: the model's seed differs from the datamodule's,
    # which Lightning refuses to merge into one hyper-parameter set unless only the run logs the config
    cfg = compose_cfg(["experiment=posedistill/priors", "size=tiny", "debug=fdr", "logger=csv", "model.seed=7"])
    with open_dict(cfg):
        cfg.analyze = False
    run_task(train, cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "completed"
    logged = OmegaConf.load(Path(cfg.paths.output_dir) / "csv" / "hparams.yaml")
    assert logged.model.seed == 7 and logged.data.seed == cfg.seed
