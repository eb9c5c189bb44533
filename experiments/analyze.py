"""Run analyses on a finished run: `python -m experiments.analyze ckpt_path=<run>/checkpoints/last.ckpt`.

Held-out embeddings are inferred first (the test step), then the run's analyses run, or those chosen
with `analysis=<group option>`. Figures, .npz arrays and metrics.json go to this command's run dir.
"""
from __future__ import annotations

import sys
from functools import partial

import hydra
from omegaconf import DictConfig

from experiments.glue.config import check_group_overrides, one_line_errors
from experiments.glue.run import evaluate, run_task


@hydra.main(version_base="1.3", config_path="../configs", config_name="analyze")
def main(cfg: DictConfig) -> None:
    with one_line_errors():  # a bad config, checkpoint path or input file: one line on stderr
        run_task(partial(evaluate, analyze=True), cfg)


if __name__ == "__main__":
    check_group_overrides(sys.argv[1:])
    main()
