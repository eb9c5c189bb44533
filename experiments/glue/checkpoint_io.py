"""Atomic checkpoints: written through ``cache.atomic_write``, read with weights_only=True."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.glue.cache import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """A checkpoint on disk is always complete: a crash mid-write leaves the previous one intact."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        with atomic_write(path) as f:
            torch.save(_plain(checkpoint), f)

    def load_checkpoint(self, path, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> dict:
        return load_checkpoint(path, map_location)


def _plain(obj: Any) -> Any:
    """OmegaConf containers (e.g. in hyper-parameters) as plain dicts/lists, loadable with weights_only."""
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def load_checkpoint(path, map_location: Optional[Any] = "cpu") -> dict:
    """torch.load with weights_only=True; a truncated or corrupt file gives an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} could not be read ({type(err).__name__}: {err}); "
                           "it is truncated or corrupt: use another checkpoint of the run") from err
