"""Config preparation shared by the entry points: validation, printing, and reporting a bad config or
bad input as one line."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.glue.schemas import ConfigError, validate
from experiments.glue.sizes import check_size_table

log = logging.getLogger(__name__)

# Entry points live in experiments/; configs/ sits beside it at the repository root.
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
if not Path(CONFIG_DIR).is_dir():
    raise FileNotFoundError(f"config folder {CONFIG_DIR} is missing: run from a checkout (pip install -e .)")


# errors a user fixes in their config or input files; anything else keeps Hydra's traceback
USER_ERRORS = (ConfigError, ValueError, KeyError, OSError)


def error_line(err: BaseException) -> str:
    """`config error: <key> ...` for a ConfigError, `error: <message>` for another user error; one line."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else err  # KeyError's str() adds quotes
    return f"{'config error' if isinstance(err, ConfigError) else 'error'}: {' '.join(str(message).split())}"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a bad config or bad input (USER_ERRORS) into one line on stderr and exit status 1, without a
    traceback; with HYDRA_FULL_ERROR=1 the error propagates and Hydra prints the full traceback."""
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(error_line(err), file=sys.stderr)
        raise SystemExit(1) from None


def check_group_overrides(argv: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Exit with the valid options (one line) when `group=option` names an option that does not exist.

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
            raise SystemExit(error_line(ConfigError(
                f"{key} must be one of the options of the config group {key}, got '{value}' "
                f"(options: {', '.join(options)})")))


def prepare_config(cfg: DictConfig) -> None:
    """Validate (schemas) and print the composed config before anything is built."""
    if HydraConfig.initialized():
        check_size_table(HydraConfig.get().runtime.choices)
    extras = cfg.get("extras") or {}
    if extras.get("validate_config", True):
        validate(cfg)
    if extras.get("print_config", False):
        from rich.console import Console
        from rich.syntax import Syntax
        Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=False), "yaml"))
