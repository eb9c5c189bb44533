"""Instantiate datamodules, models, callbacks and trainers from config nodes."""
from __future__ import annotations

from typing import Optional

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from experiments.glue.checkpoint_io import AtomicCheckpointIO
from experiments.glue.schemas import ConfigError


def _with_upstream(node: DictConfig, upstream: dict, where: str) -> tuple[DictConfig, dict]:
    """Replace a node's `upstream: [names]` list by the trained stage modules of those names."""
    if "upstream" not in node:
        return node, {}
    names = list(node.upstream)
    missing = [n for n in names if n not in upstream]
    if missing:
        raise ConfigError(f"{where}.upstream must name stages defined before it, got {missing} "
                          f"(defined: {sorted(upstream)})")
    node = node.copy()
    with_keys = OmegaConf.to_container(node, resolve=False)
    with_keys.pop("upstream")
    return OmegaConf.create(with_keys, parent=node._get_parent()), {"upstream": {n: upstream[n] for n in names}}


def build_datamodule(data_cfg: DictConfig, upstream: dict, where: str = "data") -> pl.LightningDataModule:
    """Instantiate and set up a datamodule (prepare_data, then setup('fit'))."""
    node, extra = _with_upstream(data_cfg, upstream, where)
    dm = hydra.utils.instantiate(node, **extra)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def build_model(model_cfg: DictConfig, loss_cfg: Optional[DictConfig], dm, upstream: dict,
                where: str = "model") -> pl.LightningModule:
    """Instantiate a LightningModule sized late from the datamodule's ``dims``."""
    node, extra = _with_upstream(model_cfg, upstream, where)
    kwargs = dict(getattr(dm, "dims", {}) or {})
    kwargs.update(extra)
    if loss_cfg:
        kwargs["loss"] = hydra.utils.instantiate(loss_cfg)
    # plain containers: hyper-parameters saved in checkpoints must load with weights_only=True
    return hydra.utils.instantiate(node, _convert_="all", **kwargs)


def build_callbacks(cfg: Optional[DictConfig], has_logger: bool) -> list[pl.Callback]:
    """Callbacks from the `callbacks` group; the learning-rate monitor only when something logs."""
    callbacks = []
    for cb in (cfg or {}).values():
        if not (isinstance(cb, DictConfig) and "_target_" in cb):
            continue
        if not has_logger and cb._target_.endswith("LearningRateMonitor"):
            continue
        callbacks.append(hydra.utils.instantiate(cb))
    return callbacks


def build_trainer(trainer_cfg: DictConfig, callbacks: list, loggers: list) -> pl.Trainer:
    return hydra.utils.instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False,
                                   plugins=[AtomicCheckpointIO()])


def count_parameters(model: pl.LightningModule) -> dict:
    return {"model/params_total": sum(p.numel() for p in model.parameters()),
            "model/params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
