"""W&B and CSV loggers, with the offline rule: W&B logs offline unless the user configured it, and
a requested online run falls back to offline (and says so) when the service is unreachable."""
from __future__ import annotations

import logging
import netrc
import os
import socket
import uuid
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
WANDB_ID_FILE = "wandb_id.txt"


def wandb_configured() -> bool:
    """True when the user set a W&B mode, an API key, or logged in (netrc)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_reachable(timeout_s: float = 3.0) -> bool:
    """A TCP connection to the W&B host within timeout_s (never hangs longer)."""
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = url.split("//")[-1].split("/")[0].split(":")[0]
    port = 80 if url.startswith("http://") else 443
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def decide_offline(requested: Optional[bool]) -> bool:
    """The offline rule: explicit request > WANDB_MODE > credentials and reachability."""
    mode = os.environ.get("WANDB_MODE", "")
    if requested is not None and not (requested is False and mode in ("offline", "disabled")):
        offline = bool(requested)
    elif mode in ("offline", "disabled", "dryrun"):
        return True
    else:
        offline = not wandb_configured()
    if not offline and not wandb_reachable():
        log.warning("W&B online mode was requested but the service is unreachable: logging offline; "
                    "upload later with `wandb sync <run>/wandb/offline-run-*`")
        return True
    return offline


def instantiate_loggers(cfg: Optional[DictConfig], run_dir: Path, resume_id: Optional[str]) -> list:
    """Loggers from the `logger` group; W&B gets the offline rule and a stable run id (resume)."""
    loggers = []
    if not cfg:
        return loggers
    for name, lg_cfg in cfg.items():
        if not isinstance(lg_cfg, DictConfig) or "_target_" not in lg_cfg:
            continue
        if "WandbLogger" in lg_cfg._target_:
            lg_cfg = lg_cfg.copy()
            offline = decide_offline(lg_cfg.get("offline"))
            id_file = run_dir / WANDB_ID_FILE
            run_id = resume_id or lg_cfg.get("id") or (id_file.read_text().strip() if id_file.exists() else None)
            # an all-digit id given as an override (e.g. a sweep's logger.wandb.id=12345678) parses as an int
            run_id = uuid.uuid4().hex[:8] if run_id is None else str(run_id)
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id)
            os.environ.setdefault("WANDB_INIT_TIMEOUT", "60")
            with open_dict(lg_cfg):
                lg_cfg.offline = offline
                lg_cfg.id = run_id
                lg_cfg.resume = "allow"
                lg_cfg.settings = {"_target_": "wandb.Settings", "init_timeout": 60, "silent": True}
            log.info("W&B run %s (%s)", run_id, "offline" if offline else "online")
        loggers.append(hydra.utils.instantiate(lg_cfg, _convert_="partial"))
    return loggers


def log_config(loggers: list, cfg: DictConfig, extra: dict) -> None:
    """Log the fully resolved config plus parameter counts as hyper-parameters."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.update(extra)
    for lg in loggers:
        try:
            lg.log_hyperparams(resolved)
        except Exception as err:
            if "WandbLogger" not in type(lg).__name__:
                raise
            # W&B must never fail a run: e.g. right after a kill, the killed process's W&B service can
            # still hold the run id ("run ID ... is in use"); continue under a fresh id and say so
            import wandb
            old = lg._wandb_init.get("id")
            lg._wandb_init["id"] = uuid.uuid4().hex[:8]
            lg._experiment = None
            if wandb.run is not None:
                wandb.finish()
            log.warning("W&B could not continue run %s (%s); logging under new id %s", old, err, lg._wandb_init["id"])
            lg.log_hyperparams(resolved)
