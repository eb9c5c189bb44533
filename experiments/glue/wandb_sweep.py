"""A W&B sweep whose trials are ordinary runs of `experiments.train`, each a subprocess with its own
run dir (`<sweep dir>/<n>`), its own W&B run and its own metrics.json.

Online (W&B configured and reachable, the offline rule of logging_setup) `wandb.sweep` registers the
search space and `wandb.agent` hands each trial W&B's parameters and run id. Offline the local sampler
of sweep_space stands in for W&B's controller (grid in order, random seeded; bayes drawn as random).
A failing trial is recorded (metrics.json with status and error, a failed W&B run) and the sweep goes on.
"""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf

from experiments.glue.cache import atomic_write
from experiments.glue.logging_setup import WANDB_ID_FILE, decide_offline
from experiments.glue.run import METRICS_FILE
from experiments.glue.sweep_space import check_local, hydra_override, local_trials, n_trials, sweep_config
from experiments.glue.sweep_summary import write_sweep_summary

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.yaml"
TRIAL_OUTPUT = "trial_output.log"


@dataclass
class TrialLauncher:
    """Runs trial n as `python -m experiments.train <base> <params> hydra.run.dir=<sweep dir>/<n>`."""

    sweep_dir: Path
    base_overrides: list[str]
    wandb_init: Optional[dict]  # project, entity, group, ... of the trials' W&B runs; None without W&B
    offline: bool
    results: list[dict] = field(default_factory=list)
    user_wandb_dir: Optional[str] = field(default_factory=lambda: os.environ.get("WANDB_DIR"))

    def __call__(self, params: dict[str, Any], run_id: str) -> dict:
        trial_dir = self.sweep_dir / str(len(self.results))
        trial_dir.mkdir(parents=True, exist_ok=True)
        swept = {k.lstrip("+") for k in params}  # the trial's value replaces a fixed one on the command line
        base = [o for o in self.base_overrides if o.lstrip("+~").partition("=")[0] not in swept]
        overrides = [*base, *(hydra_override(k, v) for k, v in params.items()),
                     hydra_override("hydra.run.dir", str(trial_dir))]
        if self.wandb_init is not None:
            overrides.append(f"logger.wandb.id={run_id}")
        log.info("trial %s (W&B run %s): %s", trial_dir.name, run_id,
                 " ".join(hydra_override(k, v) for k, v in params.items()))
        with (trial_dir / TRIAL_OUTPUT).open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "experiments.train", *overrides],
                                    stdout=out, stderr=subprocess.STDOUT, env=self._env())
            try:
                rc = proc.wait()
            except BaseException:  # Ctrl-C reached the trial too: let it record itself before the sweep stops
                _stop(proc)
                raise
        result = self._record(trial_dir, rc, params, run_id)
        log.info("trial %s %s%s", trial_dir.name, result["status"],
                 f": {result['error']}" if result.get("error") else "")
        self.results.append(result)
        return result

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.offline and env.get("WANDB_MODE") not in ("offline", "disabled"):
            env["WANDB_MODE"] = "offline"
        env.pop("WANDB_DIR", None)  # the agent's own dir; the trial logs under its run dir
        if self.user_wandb_dir is not None:
            env["WANDB_DIR"] = self.user_wandb_dir
        return env

    def _record(self, trial_dir: Path, rc: int, params: dict, run_id: str) -> dict:
        """The trial's metrics.json; written here for a trial that died before writing its own."""
        metrics_file = trial_dir / METRICS_FILE
        if metrics_file.exists():
            result = json.loads(metrics_file.read_text())
        else:
            result = {"status": "failed", "returncode": rc, "error": _last_error(trial_dir / TRIAL_OUTPUT)}
            with atomic_write(metrics_file, "w") as f:
                json.dump(result, f, indent=2, sort_keys=True)
        if result.get("status") != "completed" and not list(trial_dir.glob("wandb/*run-*")):
            self._record_wandb_run(trial_dir, run_id, params, result)
        return {**result, "dir": str(trial_dir), "params": params}

    def _record_wandb_run(self, trial_dir: Path, run_id: str, params: dict, result: dict) -> None:
        """A failed W&B run for a trial that failed before starting one, so the sweep shows every trial."""
        if self.wandb_init is None or os.environ.get("WANDB_MODE") == "disabled":
            return
        import wandb
        try:
            run = wandb.init(id=run_id, dir=str(trial_dir), config=params, resume="allow",
                             mode="offline" if self.offline else "online",
                             settings=wandb.Settings(init_timeout=60, silent=True), **self.wandb_init)
            run.summary.update({"status": result["status"], "error": str(result.get("error", ""))})
            run.finish(exit_code=1)
        except Exception as err:  # W&B never stops the sweep; metrics.json already holds the failure
            log.warning("could not record trial %s in W&B: %s", trial_dir.name, err)
            return
        (trial_dir / WANDB_ID_FILE).write_text(run_id)


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_error(output: Path) -> str:
    lines = [ln.strip() for ln in output.read_text(errors="replace").splitlines()
             if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return lines[-1] if lines else "the trial exited before writing any output"


def wandb_logger_node(cfg: DictConfig) -> Optional[DictConfig]:
    """The run's W&B logger config, or None when the run logs elsewhere."""
    for node in (cfg.get("logger") or {}).values():
        if isinstance(node, DictConfig) and "WandbLogger" in str(node.get("_target_", "")):
            return node
    return None


def agent_params(param_file: str) -> dict[str, Any]:
    """The parameters `wandb.agent` wrote for this trial (`{key: {value: v}}`, WANDB_SWEEP_PARAM_PATH)."""
    raw = yaml.safe_load(Path(param_file).read_text()) or {}
    return {k: v["value"] for k, v in raw.items() if k != "wandb_version"}


def run_wandb_sweep(cfg: DictConfig, base_overrides: list[str], sweep_dir: Path, source: str) -> list[dict]:
    """Write `<sweep dir>/sweep.yaml`, run every trial, write sweep_summary.md; returns the trials' records."""
    config = sweep_config(cfg, source)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    node = wandb_logger_node(cfg)
    offline = True if node is None else decide_offline(node.get("offline"))
    wandb_init = None if node is None else {k: OmegaConf.to_container(node, resolve=True).get(k)
                                            for k in ("project", "entity", "group", "job_type", "tags")}
    launcher = TrialLauncher(sweep_dir, base_overrides, wandb_init, offline)
    try:
        if offline:
            _run_local(config, int(cfg.get("sweep_seed", cfg.seed)), launcher, source, with_wandb=node is not None)
        else:
            _run_agent(config, launcher, wandb_init)
    finally:
        write_sweep_summary(sweep_dir, cfg.optimized_metric)
    return launcher.results


def _run_local(config: dict, seed: int, launcher: TrialLauncher, source: str, with_wandb: bool) -> None:
    check_local(config, source)
    log.info("%s: the local sampler (%s, seed %d) stands in for W&B's controller; %d trials",
             "W&B offline" if with_wandb else "no W&B logger", config["method"], seed, n_trials(config))
    if config["method"] == "bayes":
        log.warning("W&B's bayes search runs on its server: offline these trials are drawn at random")
    for params in local_trials(config, seed):
        launcher(params, run_id=uuid.uuid4().hex[:8])


def _run_agent(config: dict, launcher: TrialLauncher, wandb_init: dict) -> None:
    import wandb
    where = {"project": wandb_init["project"], "entity": wandb_init["entity"]}
    sweep_id = wandb.sweep(config, **where)
    (launcher.sweep_dir / "sweep_id.txt").write_text(sweep_id)
    log.info("W&B sweep %s: the agent runs %d trials", sweep_id, n_trials(config))

    def trial() -> None:
        launcher(agent_params(os.environ["WANDB_SWEEP_PARAM_PATH"]), run_id=os.environ["WANDB_RUN_ID"])

    os.environ["WANDB_DIR"] = str(launcher.sweep_dir)  # the agent writes each trial's parameter file here
    try:
        wandb.agent(sweep_id, function=trial, count=n_trials(config), **where)
    finally:
        if launcher.user_wandb_dir is None:
            os.environ.pop("WANDB_DIR", None)
        else:
            os.environ["WANDB_DIR"] = launcher.user_wandb_dir


def best_trial(results: list[dict], metric: str, mode: str) -> Optional[dict]:
    """The completed trial with the best finite `metric` (max or min)."""
    scored = [r for r in results if r.get("status") == "completed" and isinstance(r.get(metric), (int, float))
              and math.isfinite(r[metric])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[metric])
