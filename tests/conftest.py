"""Shared fixtures: compose the real configs for tests (no logger, CPU, outputs under tmp_path).

Tests make a run tiny with the run size `size=tiny` (configs/size/<experiment>/tiny.yaml)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "configs")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_DEPRECATION_WARNINGS_AS_ERRORS", "1")  # Hydra's switch; see pyproject filterwarnings


def requires(module: str):
    """Skip unless an optional package is importable (importlib.util.find_spec)."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} not installed")


def compose_train(tmp_path: Path, overrides: list[str], config_name: str = "train",
                  cache_dir: Path | None = None) -> DictConfig:
    """Compose configs/<config_name>.yaml with test defaults and register it as Hydra's config."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=["logger=none", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(tmp_path)
        cfg.paths.cache_dir = str(cache_dir or tmp_path / "cache")
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.job.num = 0
        if "extras" in cfg:
            cfg.extras.print_config = False
        if "trainer" in cfg:
            cfg.trainer.enable_progress_bar = False
        if cfg.get("callbacks"):
            cfg.callbacks.pop("rich_progress_bar", None)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache dir for generated datasets and stages across the session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def compose_cfg(tmp_path, shared_cache):
    """compose_cfg(overrides) -> DictConfig of train.yaml, outputs under tmp_path."""
    def _compose(overrides: list[str], config_name: str = "train") -> DictConfig:
        return compose_train(tmp_path, overrides, config_name, cache_dir=shared_cache)
    yield _compose
    GlobalHydra.instance().clear()
