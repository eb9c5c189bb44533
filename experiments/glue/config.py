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


def check_group_overrides(argv: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Exit with the valid options when `group=option` names an option that does not exist.

    Hydra lists options only for groups with files at their top level; ours are nested
    (model/jedi/..., experiment/posedistill/...), so the full list is printed here.
    """
    root = Path(config_dir)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        group = root / key
        if not sep or not group.is_dir() or not value or any(ch in value for ch in ",()[]*"):
            continue
        if value != "null" and not (group / f"{value}.yaml").is_file():
            options = sorted(str(p.relative_to(group).with_suffix("")) for p in group.rglob("*.yaml"))
            raise SystemExit(f"Unknown option '{value}' for config group '{key}' (override '{arg}').\n"
                             f"Available options in '{key}':\n  " + "\n  ".join(options))


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
