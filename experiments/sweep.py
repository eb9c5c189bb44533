"""Run a W&B sweep: `python -m experiments.sweep experiment=jedi/multifreq hparams_search=wandb_jedi [overrides]`.

Writes the W&B sweep config (`<sweep dir>/sweep.yaml`) from the `wandb_sweep` search space and runs each
trial as `python -m experiments.train <your overrides> <the trial's parameters>` in `<sweep dir>/<n>`;
online W&B's controller and agent choose the parameters, offline a local seeded sampler does.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.glue.config import check_group_overrides, one_line_errors, prepare_config
from experiments.glue.wandb_sweep import best_trial, run_wandb_sweep

# overrides that define the sweep itself (and their sub-keys), kept out of its trials
SWEEP_KEYS = ("hparams_search", "wandb_sweep", "sweep_seed", "hydra.run", "hydra.sweep", "hydra.mode")


def trial_overrides(hydra_cfg: DictConfig) -> list[str]:
    """The command line of this sweep, less the keys that define the sweep."""
    def defines_sweep(override: str) -> bool:
        key = override.lstrip("+~").partition("=")[0]
        return any(key == k or key.startswith(k + ".") for k in SWEEP_KEYS)
    return [o for o in [*hydra_cfg.overrides.task, *hydra_cfg.overrides.hydra] if not defines_sweep(o)]


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    choice = hydra_cfg.runtime.choices.get("hparams_search")
    if cfg.get("wandb_sweep") is None:
        raise SystemExit(f"experiments.sweep needs a W&B search space: hparams_search=wandb_<name> "
                         f"(configs/hparams_search/wandb_*.yaml), got hparams_search={choice}")
    sweep_dir = Path(hydra_cfg.runtime.output_dir)
    with one_line_errors():  # a bad base config or search space: one line, before any trial starts
        prepare_config(cfg)
        results = run_wandb_sweep(cfg, trial_overrides(hydra_cfg), sweep_dir,
                                  source=f"configs/hparams_search/{choice}.yaml")
    failed = [r for r in results if r.get("status") != "completed"]
    best = best_trial(results, cfg.optimized_metric, cfg.get("optimized_mode", "max"))
    print(f"{len(results) - len(failed)} of {len(results)} trials completed; summary in {sweep_dir / 'sweep_summary.md'}")
    if best is not None:
        print(f"best trial {best['dir']}: {cfg.optimized_metric}={best[cfg.optimized_metric]:.4g} {best['params']}")
    if results and len(failed) == len(results):
        raise SystemExit(f"every trial failed; see {sweep_dir / 'sweep_summary.md'}")
    print(f"sweep dir: {sweep_dir}")


if __name__ == "__main__":
    check_group_overrides(sys.argv[1:])
    main()
