"""Prerequisite stages (teachers, priors, ...) trained before the main model and cached.

A stage is reused when its resolved config, its upstream stages and the seed are unchanged; its
cache holds only a state_dict, the resolved config and its metrics (never pickled objects).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from experiments.glue.build import build_datamodule, build_model, build_trainer
from experiments.glue.callbacks import DivergenceGuard
from experiments.glue.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from jedi_rnn.data.trials import config_hash

log = logging.getLogger(__name__)
# trainer settings that never change a stage's weights (stages train with checkpointing off)
RUN_ONLY_TRAINER_KEYS = {"default_root_dir", "enable_progress_bar", "enable_model_summary", "log_every_n_steps",
                         "enable_checkpointing"}


def _upstream_names(stage: DictConfig) -> list[str]:
    names = []
    for part in ("data", "model"):
        node = stage.get(part)
        if node is not None and "upstream" in node:
            names += list(node.upstream)
    return names


def stage_trainer_config(cfg: DictConfig, stage: DictConfig) -> DictConfig:
    """The stage's effective trainer settings: the run's trainer config merged under the stage's own."""
    return OmegaConf.merge(OmegaConf.to_container(cfg.trainer, resolve=True), stage.get("trainer") or {})


def stage_key(cfg: DictConfig, stage: DictConfig, upstream_hashes: dict[str, str]) -> str:
    """Cache key of a stage: its resolved config, the seed, its effective trainer settings without
    the run-only ones (a fast_dev_run stage must never be reused by a real run; where a run writes
    its own files or whether it shows a progress bar must not retrain it) and its upstream keys."""
    trainer = {k: v for k, v in OmegaConf.to_container(stage_trainer_config(cfg, stage)).items()
               if k not in RUN_ONLY_TRAINER_KEYS}
    return config_hash({"stage": OmegaConf.to_container(stage, resolve=True), "seed": cfg.seed, "trainer": trainer,
                        "upstream": {u: upstream_hashes.get(u) for u in _upstream_names(stage)}})


def train_or_reuse(name: str, stage_dir: Path, load: Callable[[Path], object], fit: Callable[[], None]) -> bool:
    """Load ``stage_dir/model.ckpt`` with ``load``, or train the stage with ``fit`` (which writes it);
    returns True when it trained. The stage's lock file (``<stage_dir>.lock``) is held throughout, so
    that runs started together (``--jobs``, multirun, SLURM arrays) train a shared stage once: the
    others wait, then reuse it, instead of writing the same directory at the same time."""
    stage_dir.parent.mkdir(parents=True, exist_ok=True)
    ckpt = stage_dir / "model.ckpt"
    with FileLock(f"{stage_dir}.lock"):
        if ckpt.exists():
            try:
                load(ckpt)
                log.info("stage %s: reusing %s", name, ckpt)
                return False
            except Exception as err:  # half-written or stale: retrain, never use half-read
                log.warning("stage %s: cached checkpoint unusable (%s); retraining", name, err)
                ckpt.unlink()
        log.info("stage %s: training into %s", name, stage_dir)
        fit()
        return True


def _load_stage(model: pl.LightningModule, ckpt: Path) -> None:
    model.load_state_dict(load_checkpoint(ckpt)["state_dict"])


def _fit_stage(model: pl.LightningModule, dm, stage: DictConfig, trainer_cfg: DictConfig, stage_dir: Path) -> None:
    """Train a stage into ``stage_dir``: CSV logs, resolved config, metrics, then (atomically) the weights."""
    trainer_cfg = OmegaConf.merge(trainer_cfg, {"default_root_dir": str(stage_dir), "enable_checkpointing": False})
    trainer = build_trainer(trainer_cfg, [DivergenceGuard()], [pl.loggers.CSVLogger(str(stage_dir), name="csv", version="")])
    trainer.fit(model, datamodule=dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "config.yaml").write_text(OmegaConf.to_yaml(stage, resolve=True))
    (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    AtomicCheckpointIO().save_checkpoint({"state_dict": model.state_dict()}, stage_dir / "model.ckpt")


def run_stages(cfg: DictConfig) -> dict[str, pl.LightningModule]:
    """Train (or reuse) every stage in `cfg.stages`, in order; returns frozen modules by name."""
    done: dict[str, pl.LightningModule] = {}
    hashes: dict[str, str] = {}
    for name, stage in (cfg.get("stages") or {}).items():
        for part in ("data", "model"):
            if stage.get(part) is None:
                raise ValueError(f"stages.{name}.{part} is missing")
        trainer_cfg = stage_trainer_config(cfg, stage)
        hashes[name] = stage_key(cfg, stage, hashes)
        stage_dir = Path(cfg.paths.cache_dir) / "stages" / f"{name}-{hashes[name]}"
        pl.seed_everything(cfg.seed, workers=True)
        dm = build_datamodule(stage.data, done, where=f"stages.{name}.data")
        model = build_model(stage.model, stage.get("loss"), dm, done, where=f"stages.{name}.model")
        train_or_reuse(name, stage_dir, partial(_load_stage, model),
                       partial(_fit_stage, model, dm, stage, trainer_cfg, stage_dir))
        model.eval()
        model.requires_grad_(False)
        done[name] = model
    return done
