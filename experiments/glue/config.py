"""Config preparation shared by the entry points: resolvers, validation and printing."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Entry points live in experiments/; configs/ sits beside it at the repository root.
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
if not Path(CONFIG_DIR).is_dir():
    raise FileNotFoundError(f"config folder {CONFIG_DIR} is missing: run from a checkout (pip install -e .)")


def prepare_config(cfg: DictConfig) -> None:
    """Validate (schemas) and print the composed config before anything is built."""
    extras = cfg.get("extras") or {}
    if extras.get("validate_config", True):
        from experiments.glue.schemas import validate
        validate(cfg)
    if extras.get("print_config", False):
        from rich.console import Console
        from rich.syntax import Syntax
        Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=False), "yaml"))
