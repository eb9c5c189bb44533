"""Prerequisite stages (teachers, priors, ...) trained before the main model and kept in the cache.

A stage is reused when its resolved config, its upstream stages and the seed are unchanged; its
entry (``<cache_dir>/stages/<name>-<hash>/``) holds only a state_dict, the resolved config and its
metrics (never pickled objects).
"""
from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from experiments.glue.build import build_datamodule, build_model, build_trainer
from experiments.glue.cache import DiskCache, config_hash
from experiments.glue.callbacks import DivergenceGuard
from experiments.glue.checkpoint_io import load_checkpoint

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


def _without_cache(node):
    """A resolved config without its ``cache`` arguments: whether and where built data are kept never
    shapes a stage's weights."""
    if isinstance(node, dict):
        return {k: _without_cache(v) for k, v in node.items() if k != "cache"}
    if isinstance(node, list):
        return [_without_cache(v) for v in node]
    return node


def stage_key(cfg: DictConfig, stage: DictConfig, upstream_hashes: dict[str, str]) -> dict:
    """Cache key of a stage: its resolved config (without the cache it reads data from), the seed, its
    effective trainer settings without the run-only ones (a fast_dev_run stage must never be reused by
    a real run; where a run writes its own files or whether it shows a progress bar must not retrain
    it) and the keys' hashes of its upstream stages."""
    trainer = {k: v for k, v in OmegaConf.to_container(stage_trainer_config(cfg, stage)).items()
               if k not in RUN_ONLY_TRAINER_KEYS}
    return {"stage": _without_cache(OmegaConf.to_container(stage, resolve=True)), "seed": cfg.seed,
            "trainer": trainer, "upstream": {u: upstream_hashes.get(u) for u in _upstream_names(stage)}}


def _load_stage(model: pl.LightningModule, ckpt: Path) -> pl.LightningModule:
    model.load_state_dict(load_checkpoint(ckpt)["state_dict"])
    return model


def _save_stage(model: pl.LightningModule, f) -> None:
    torch.save({"state_dict": model.state_dict()}, f)


def _fit_stage(model: pl.LightningModule, dm, stage: DictConfig, trainer_cfg: DictConfig,
               stage_dir: Path) -> pl.LightningModule:
    """Train a stage, writing its CSV logs, resolved config and metrics into ``stage_dir`` (the cache
    then writes its weights, ``model.ckpt``, atomically: the entry is complete once that exists)."""
    trainer_cfg = OmegaConf.merge(trainer_cfg, {"default_root_dir": str(stage_dir), "enable_checkpointing": False})
    trainer = build_trainer(trainer_cfg, [DivergenceGuard()], [pl.loggers.CSVLogger(str(stage_dir), name="csv", version="")])
    trainer.fit(model, datamodule=dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "config.yaml").write_text(OmegaConf.to_yaml(stage, resolve=True))
    (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return model


def run_stages(cfg: DictConfig) -> dict[str, pl.LightningModule]:
    """Train (or reuse) every stage in `cfg.stages`, in order; returns frozen modules by name."""
    cache = DiskCache(cfg.paths.cache_dir)
    done: dict[str, pl.LightningModule] = {}
    hashes: dict[str, str] = {}
    for name, stage in (cfg.get("stages") or {}).items():
        for part in ("data", "model"):
            if stage.get(part) is None:
                raise ValueError(f"stages.{name}.{part} is missing")
        trainer_cfg = stage_trainer_config(cfg, stage)
        key = stage_key(cfg, stage, hashes)
        hashes[name] = config_hash(key)
        stage_dir = cache.path(f"stages/{name}", key)
        pl.seed_everything(cfg.seed, workers=True)
        dm = build_datamodule(stage.data, done, where=f"stages.{name}.data")
        model = build_model(stage.model, stage.get("loss"), dm, done, where=f"stages.{name}.model")
        cache.get_or_build(stage_dir / "model.ckpt", partial(_load_stage, model),
                           partial(_fit_stage, model, dm, stage, trainer_cfg, stage_dir), _save_stage)
        model.eval()
        model.requires_grad_(False)
        done[name] = model
    return done
