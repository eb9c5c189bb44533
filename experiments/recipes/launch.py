"""Run a recipe's jobs as one Hydra multirun, so that Hydra's launchers serve them: basic (one after
the other), joblib (`hydra/launcher=local_parallel`) or submitit (`hydra/launcher=slurm`).

A recipe lists its jobs: a name (the run's directory under `<out>/runs/`) and the overrides of
configs/train.yaml. `launch` writes them to `<out>/jobs.yaml` and starts

    python -m experiments.recipes.launch -m jobs_file=<out>/jobs.yaml job=<name>,<name>,... \
        hydra.sweep.dir=<out>/runs [hydra/launcher=...]

Every job composes the train config with its own overrides (a recipe's rows differ in more than the
values a grid sweeps: the model group, keys a model does not take) and runs it as
`python -m experiments.train` would, in `<out>/runs/<name>/` (metrics.json, checkpoints,
.hydra/config.yaml for `experiments.evaluate`). A job whose metrics.json says completed is not run
again, so a recipe resumes where it stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.glue.config import one_line_errors, prepare_config
from experiments.glue.run import METRICS_FILE, run_task, train
from experiments.glue.schemas import ConfigError

# --launcher of the recipes -> the Hydra launcher override (configs/hydra/launcher/)
LAUNCHERS = {"local": [], "parallel": ["hydra/launcher=local_parallel"], "slurm": ["hydra/launcher=slurm"]}
JOBS_FILE = "jobs.yaml"
LAUNCH_LOG = "launch.log"


@dataclass(frozen=True)
class Job:
    """One run of a recipe: `name` is its directory under `<out>/runs/` (letters, digits, `_`, `/`)."""

    name: str
    overrides: tuple[str, ...]


def run_dir(out: Path, name: str) -> Path:
    return out / "runs" / name


def read_metrics(path: Path) -> Optional[dict]:
    """A run dir's metrics.json, or None when it has none (not run, or killed before writing it)."""
    file = path / METRICS_FILE
    return json.loads(file.read_text()) if file.exists() else None


def launch(jobs: list[Job], out: Path, launcher: str = "local", n_jobs: int = 1) -> int:
    """Run the jobs that have not completed as one multirun (`local` with n_jobs > 1 is `parallel`);
    its stdout goes to `<out>/launch.log`. Returns the multirun's exit status (0: nothing left to run)."""
    bad = [j.name for j in jobs if not j.name or any(not (c.isalnum() or c in "_/") for c in j.name)]
    if bad:
        raise ValueError(f"job names must use letters, digits, '_' and '/', got {bad}")
    pending = [j for j in jobs if (read_metrics(run_dir(out, j.name)) or {}).get("status") != "completed"]
    if not pending:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    jobs_file = out / JOBS_FILE
    jobs_file.write_text(yaml.safe_dump({j.name: list(j.overrides) for j in jobs}, sort_keys=False))
    if launcher == "local" and n_jobs > 1:
        launcher = "parallel"
    cmd = [sys.executable, "-m", "experiments.recipes.launch", "-m", f"jobs_file={jobs_file}",
           "job=" + ",".join(j.name for j in pending), f"hydra.sweep.dir={out / 'runs'}", *LAUNCHERS[launcher]]
    if launcher == "parallel":
        cmd.append(f"hydra.launcher.n_jobs={max(1, n_jobs)}")
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(out / LAUNCH_LOG, "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def compose_job(overrides: list[str], output_dir: Path) -> DictConfig:
    """configs/train.yaml with the job's overrides, its Hydra node pointing at this job's directory."""
    outer = HydraConfig.get()
    cfg = hydra.compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = outer.runtime.cwd
        cfg.hydra.job.num = outer.job.num
        cfg.hydra.mode = RunMode.MULTIRUN
    return cfg


def save_run_config(cfg: DictConfig, overrides: list[str], output_dir: Path) -> None:
    """Write .hydra/{config,hydra,overrides}.yaml as a run of experiments.train does."""
    hydra_dir = output_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.masked_copy(
        cfg, [k for k in cfg if k != "hydra"])))
    (hydra_dir / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": cfg.hydra}))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def prepare_and_train(cfg: DictConfig) -> dict:
    prepare_config(cfg)  # inside the task: a bad job is recorded like any failure
    return train(cfg)


@hydra.main(version_base="1.3", config_path="../../configs", config_name="recipe")
def main(cfg: DictConfig) -> Optional[float]:
    jobs = yaml.safe_load(Path(cfg.jobs_file).read_text())
    if cfg.job not in jobs:
        raise ConfigError(f"job must be one of the jobs of {cfg.jobs_file}, got {cfg.job!r}")
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    job_cfg = compose_job(list(jobs[cfg.job]), output_dir)
    save_run_config(job_cfg, list(jobs[cfg.job]), output_dir)
    hydra_config = HydraConfig.instance()
    outer = hydra_config.cfg
    hydra_config.set_config(job_cfg)  # `${hydra:...}` and the size check see this job's composition
    try:
        with open_dict(job_cfg):
            del job_cfg["hydra"]  # as in a run of experiments.train, the task's config has no hydra node
        with one_line_errors():
            metrics = run_task(prepare_and_train, job_cfg)
    finally:
        hydra_config.cfg = outer
    return metrics.get(job_cfg.get("optimized_metric"), float("nan"))


if __name__ == "__main__":
    main()
