"""The demo's offline W&B run can be read back: it holds the resolved config, the metrics and a figure."""
from __future__ import annotations

from pathlib import Path

import pytest

from experiments.glue.run import run_task, train
from tests.experiments.test_train import TINY_JEDI
from tests.experiments.wandb_reader import run_contents


@pytest.mark.wandb
def test_offline_wandb_run_holds_config_metrics_and_figure(compose_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg([*TINY_JEDI, "trainer.max_epochs=2", "logger=wandb", "analysis=jedi/multifreq",
                       "~analysis.probes", "~analysis.fixed_points", "~analysis.lyapunov"])
    metrics = run_task(train, cfg)
    run_dir = Path(cfg.paths.output_dir)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert (run_dir / "wandb_id.txt").read_text().strip() in offline.name
    run = run_contents(next(offline.glob("run-*.wandb")))
    assert run["config"].get("model", {}).get("_target_") == "jedi_rnn.lit_module.JediModule", sorted(run["config"])
    assert run["config"]["model/params_total"] > 0
    summary = run["summary"]
    assert summary["test/r2"] == pytest.approx(metrics["test/r2"])
    assert summary["analysis/generalisation/r2_seen"] == pytest.approx(metrics["analysis/generalisation/r2_seen"])
    assert summary["status"] == "completed"
    images = [f for f in run["files"] if f.startswith("media/images/") and f.endswith(".png")]
    assert images, f"no figure was logged: {run['files']}"
    assert all((offline / "files" / f).is_file() for f in images)


def test_an_all_digit_run_id_override_is_kept_as_a_string(tmp_path, monkeypatch):
    """`logger.wandb.id=12345678` parses as an int; the run still starts and records that id."""
    from omegaconf import OmegaConf

    from experiments.glue.logging_setup import WANDB_ID_FILE, instantiate_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = OmegaConf.create({"wandb": {"_target_": "pytorch_lightning.loggers.WandbLogger", "id": 12345678,
                                      "save_dir": str(tmp_path), "project": "t"}})
    (logger,) = instantiate_loggers(cfg, tmp_path, None)
    assert (tmp_path / WANDB_ID_FILE).read_text() == "12345678"
    assert logger._id == "12345678"
