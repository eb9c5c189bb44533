"""Train, test, analyse: `python -m experiments.train experiment=jedi/multifreq [overrides]`."""
from __future__ import annotations

import sys
from typing import Optional

import hydra
from omegaconf import DictConfig

from experiments.glue.config import check_group_overrides, one_line_errors, prepare_config
from experiments.glue.run import run_task, train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> Optional[float]:
    if cfg.get("wandb_sweep") is not None:
        raise SystemExit("hparams_search=wandb_* is a W&B sweep: run it with `python -m experiments.sweep ...`")

    def prepare_and_train(cfg: DictConfig) -> dict:
        prepare_config(cfg)  # inside the task: a bad job of a sweep is recorded like any failure
        return train(cfg)

    with one_line_errors():  # a bad config or input file: one line on stderr, exit status 1
        metrics = run_task(prepare_and_train, cfg)
    return metrics.get(cfg.get("optimized_metric"), float("nan"))


if __name__ == "__main__":
    check_group_overrides(sys.argv[1:])
    main()
