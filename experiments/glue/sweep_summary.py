"""Lists every job of a sweep, failed ones included, in sweep_summary.md (a Hydra callback for multiruns)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    """Writes `<sweep dir>/sweep_summary.md`: job number, status, overrides and the optimised metric."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(Path(config.hydra.sweep.dir), config.get("optimized_metric"))


def write_sweep_summary(sweep_dir: Path, metric: str) -> None:
    """One row per numbered job dir of `sweep_dir` (a Hydra multirun or a W&B sweep)."""
    rows = ["| job | status | overrides | " + str(metric) + " | error |", "|---|---|---|---|---|"]
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for job in jobs:
        metrics_file = job / "metrics.json"
        result = json.loads(metrics_file.read_text()) if metrics_file.exists() else {"status": "not run"}
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = " ".join(line.lstrip("- ").strip() for line in overrides_file.read_text().splitlines()
                             if line.strip()) if overrides_file.exists() else ""
        value = result.get(metric, "")
        error = str(result.get("error", "")).replace("|", "/").replace("\n", " ")[:200]
        rows.append(f"| {job.name} | {result['status']} | `{overrides}` | {value} | {error} |")
    (sweep_dir / "sweep_summary.md").write_text("\n".join(rows) + "\n")
