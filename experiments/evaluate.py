"""Test a finished run: `python -m experiments.evaluate ckpt_path=<run>/checkpoints/best.ckpt`.

Data and model are rebuilt from the run's saved `.hydra/config.yaml`; the weights are loaded with
weights_only=True. Results go to this evaluation's own run dir (metrics.json).
"""
from __future__ import annotations

import sys
from typing import Optional

import hydra
from omegaconf import DictConfig

from experiments.glue.config import check_group_overrides, one_line_errors
from experiments.glue.run import evaluate, run_task


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> Optional[float]:
    with one_line_errors():  # a bad config, checkpoint path or input file: one line on stderr
        metrics = run_task(evaluate, cfg)
    return metrics.get("test/r2")


if __name__ == "__main__":
    check_group_overrides(sys.argv[1:])
    main()
