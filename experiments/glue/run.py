"""The run contract shared by the entry points: seed, build, fit, test, analyse, write metrics.json.

`run_task` wraps a run: the W&B run is always finished (marked failed on error) and metrics.json
records the status, so a failed run's directory still says what happened.
"""
from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities.exceptions import SIGTERMException

from experiments.glue.build import build_callbacks, build_datamodule, build_model, build_trainer, count_parameters
from experiments.glue.cache import atomic_write
from experiments.glue.checkpoint_io import load_checkpoint
from experiments.glue.logging_setup import WANDB_ID_FILE, instantiate_loggers, log_config
from experiments.glue.stages import run_stages

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def check_writable(run_dir: Path) -> None:
    """Fail at start, naming the path, when the output dir cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir):
            pass
    except OSError as err:
        raise PermissionError(f"output dir {run_dir} is not writable ({err.strerror}); "
                              "set paths.log_dir=... or hydra.run.dir=... to a writable place") from err


def _scalar_metrics(metrics: dict, prefixes: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefixes) and (not torch.is_tensor(v) or v.numel() == 1):
            out[k] = float(v)
    return out


def run_analyses(analysis_cfg: Optional[DictConfig], model, dm, run_dir: Path, loggers: list) -> dict[str, float]:
    """Call every analysis; prefix its numbers with `analysis/`, log them and its PNG figures."""
    results: dict[str, float] = {}
    fig_dir = run_dir / "figures"
    for name, node in (analysis_cfg or {}).items():
        fig_dir.mkdir(parents=True, exist_ok=True)
        before = set(fig_dir.glob("*.png"))
        log.info("analysis %s", name)
        fn = hydra.utils.instantiate(node)
        numbers = fn(module=model, datamodule=dm, out_dir=fig_dir)
        results.update({f"analysis/{k}": float(v) for k, v in numbers.items()})
        for lg in loggers:
            if hasattr(lg, "log_image"):
                for png in sorted(set(fig_dir.glob("*.png")) - before):
                    lg.log_image(key=f"figures/{png.stem}", images=[str(png)])
    for lg in loggers:
        if results:
            lg.log_metrics(results)
    return results


def _resume(cfg: DictConfig) -> tuple[Optional[str], Optional[str]]:
    """Checkpoint to resume from and the W&B id to continue; the run continues in its own dir.

    `ckpt_path=<run>/checkpoints/last.ckpt` resumes explicitly; a requeued job (same output dir,
    e.g. after SLURM preemption) finds its own last.ckpt and resumes by itself.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if cfg.get("auto_resume", True) and own.exists():
            log.info("found %s: resuming this run", own)
            ckpt = str(own)
    if ckpt is None:
        return None, None
    ckpt_path = Path(ckpt).resolve()
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such checkpoint")
    run_dir = ckpt_path.parent.parent
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    trim_csv_logs(run_dir, int(load_checkpoint(ckpt_path).get("global_step", 0)))
    id_file = run_dir / WANDB_ID_FILE
    return str(ckpt_path), id_file.read_text().strip() if id_file.exists() else None


def trim_csv_logs(run_dir: Path, global_step: int) -> None:
    """Drop CSV rows logged after the checkpoint being resumed: those steps are run (and logged) again,
    so every step appears exactly once."""
    for path in run_dir.glob("csv/metrics.csv"):
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, [r for r in reader if int(r["step"]) < global_step]
        with atomic_write(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test on held-out data with the best checkpoint, analyse; returns the final metrics."""
    ckpt_path, resume_id = _resume(cfg)
    run_dir = Path(cfg.paths.output_dir)
    check_writable(run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    upstream = run_stages(cfg)
    dm = build_datamodule(cfg.data, upstream)
    model = build_model(cfg.model, cfg.get("loss"), dm, upstream)
    loggers = instantiate_loggers(cfg.get("logger"), run_dir, resume_id)
    trainer = build_trainer(cfg.trainer, build_callbacks(cfg.get("callbacks"), bool(loggers)), loggers)
    log_config(loggers, cfg, count_parameters(model))

    metrics: dict[str, float] = {k: float(v) for k, v in count_parameters(model).items()}
    if cfg.get("train", True):
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        metrics["time/fit_s"] = time.perf_counter() - start
        metrics.update(_scalar_metrics(trainer.callback_metrics, ("val/", "train/")))
    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train", True) else ""
        if best:
            log.info("testing the best checkpoint %s", best)
        results = trainer.test(model, datamodule=dm, ckpt_path=best or None)
        for r in results:
            metrics.update(_scalar_metrics(r, ("test/",)))
    if cfg.get("analyze", True) and trainer.is_global_zero:
        metrics.update(run_analyses(cfg.get("analysis"), model, dm, run_dir, loggers))
    return metrics


def rebuild_from_run(cfg: DictConfig):
    """Data, model (weights loaded with weights_only=True) and the run's config, from a checkpoint."""
    ckpt = Path(cfg.ckpt_path).resolve()
    run_cfg_path = Path(cfg.run_config) if cfg.get("run_config") else ckpt.parent.parent / ".hydra" / "config.yaml"
    if not run_cfg_path.is_file():
        raise FileNotFoundError(f"the run's config {run_cfg_path} is missing; pass run_config=<path to config.yaml>")
    run_cfg = OmegaConf.load(run_cfg_path)
    with open_dict(run_cfg):
        run_cfg.paths = OmegaConf.merge(run_cfg.paths, cfg.paths)
        run_cfg.paths.output_dir = cfg.paths.output_dir
    pl.seed_everything(run_cfg.seed, workers=True)
    upstream = run_stages(run_cfg)
    dm = build_datamodule(run_cfg.data, upstream)
    model = build_model(run_cfg.model, run_cfg.get("loss"), dm, upstream)
    model.load_state_dict(load_checkpoint(ckpt)["state_dict"])
    return run_cfg, dm, model


def evaluate(cfg: DictConfig, analyze: bool = False) -> dict[str, float]:
    """Test a finished run's checkpoint (and optionally run its analyses) into this run's dir."""
    run_dir = Path(cfg.paths.output_dir)
    check_writable(run_dir)
    run_cfg, dm, model = rebuild_from_run(cfg)
    loggers = instantiate_loggers(cfg.get("logger"), run_dir, None)
    trainer = build_trainer(OmegaConf.merge(run_cfg.trainer, {"default_root_dir": str(run_dir)}), [], loggers)
    metrics: dict[str, float] = {}
    for r in trainer.test(model, datamodule=dm):
        metrics.update(_scalar_metrics(r, ("test/",)))
    if analyze:
        analysis_cfg = cfg.analysis if cfg.get("analysis") is not None else run_cfg.get("analysis")
        metrics.update(run_analyses(analysis_cfg, model, dm, run_dir, loggers))
    return metrics


def run_task(fn: Callable[[DictConfig], dict], cfg: DictConfig) -> dict[str, float]:
    """Run `fn`, write metrics.json (with status), and always finish the W&B run."""
    run_dir = Path(cfg.paths.output_dir)
    status, metrics = "failed", {}
    try:
        metrics = fn(cfg)
        status = "completed"
        return metrics
    except BaseException as err:
        status = {SIGTERMException: "preempted", KeyboardInterrupt: "interrupted"}.get(type(err), "failed")
        log.error("run %s: %s: %s", status, type(err).__name__, err)
        metrics["error"] = f"{type(err).__name__}: {err}"
        if status == "failed" and _in_multirun():
            # one failing job must not stop the sweep: it is recorded in metrics.json and in
            # the sweep summary, and reported to the sweeper as a failed (NaN) value
            log.error("job failed; the sweep goes on", exc_info=err)
            return {}
        raise
    finally:
        run_dir = Path(cfg.paths.output_dir)  # a resumed run continues in its original dir
        try:
            with atomic_write(run_dir / METRICS_FILE, "w") as f:
                json.dump({**metrics, "status": status}, f, indent=2, sort_keys=True)
        except OSError as err:
            log.error("could not write %s: %s", run_dir / METRICS_FILE, err)
        _finish_wandb(status)
        if status == "completed":
            _print_summary(metrics, run_dir)


def _print_summary(metrics: dict, run_dir: Path) -> None:
    """The final test and analysis numbers, then the run dir (the last line, for scripts)."""
    from rich.console import Console
    from rich.table import Table
    table = Table(title="final metrics (metrics.json)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(k for k in metrics if k.startswith(("test/", "analysis/"))):
        table.add_row(key, f"{metrics[key]:.4g}")
    if table.row_count:
        Console().print(table)
    print(f"run dir: {run_dir}")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _finish_wandb(status: str) -> None:
    """Finish the W&B run of this job (each multirun job gets its own)."""
    import sys
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    wandb.run.summary["status"] = status
    wandb.finish(exit_code=0 if status == "completed" else 1)
