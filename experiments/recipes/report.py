"""The recipes' report: tables and checks from the runs' metrics.json, written as markdown and CSV
(table.md/.csv, checks.md, ...) and logged to W&B (tables as `wandb.Table`, figures as images) in a
`report` run of the recipe's W&B group.

A recipe reads its runs with `collect`, averages a row's runs (one per seed) with `mean` / `sd`, builds
`Table`s (its checks: a Table of `Check` verdicts), writes them with `write_table` and calls
`log_to_wandb`. W&B is offline unless the user configured it (the runner's offline rule); a W&B failure
is reported and never fails the recipe.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from omegaconf import OmegaConf

from experiments.recipes.launch import LAUNCH_LOG, Job, read_metrics, run_dir

log = logging.getLogger(__name__)
WANDB_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "logger" / "wandb.yaml"


@dataclass
class Run:
    """One job's result: its name, its metrics.json (or a failed status saying why there is none)."""

    name: str
    metrics: dict

    def get(self, key: str) -> Any:
        return self.metrics.get(key)

    @property
    def completed(self) -> bool:
        return self.metrics.get("status") == "completed"


def collect(jobs: Sequence[Job], out: Path) -> dict[str, Run]:
    """Every job's Run by name; a job without metrics.json is failed, pointing at its log."""
    runs = {}
    for job in jobs:
        metrics = read_metrics(run_dir(out, job.name))
        if metrics is None:
            metrics = {"status": "failed", "error": f"no metrics.json; see {run_dir(out, job.name) / 'recipe.log'} "
                                                    f"and {out / LAUNCH_LOG}"}
        runs[job.name] = Run(job.name, metrics)
    return runs


def _number(value: Any) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def values(runs: Sequence[Run], key: str) -> list[float]:
    """The finite numbers of `key` over the runs that have one."""
    return [v for v in (_number(r.get(key)) for r in runs) if v is not None]


def mean(runs: Sequence[Run], key: str) -> Optional[float]:
    """Mean of `key` over the runs that have it; None if none has."""
    found = values(runs, key)
    return float(np.mean(found)) if found else None


def sd(runs: Sequence[Run], key: str) -> Optional[float]:
    """Sample standard deviation (ddof 1) of `key` over the runs that have it; None for fewer than two."""
    found = values(runs, key)
    return float(np.std(found, ddof=1)) if len(found) > 1 else None


def status(runs: Sequence[Run]) -> str:
    """`completed` if every run completed, else the runs' statuses joined (e.g. `completed,failed`)."""
    return ",".join(sorted({str(r.get("status") or "?") for r in runs}))


def errors(runs: Sequence[Run], width: int = 160) -> str:
    """The runs' errors on one line, cut to `width` characters, without the table's `|`."""
    text = "; ".join(str(r.get("error")) for r in runs if r.get("error"))
    return " ".join(text.replace("|", "/").split())[:width]


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: `–` for a missing number, the string itself, or the number with `digits` decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


@dataclass
class Table:
    """A named table: `rows` hold the values (numbers or strings; None for missing), `cells` the
    markdown text of each value (default: `fmt`), `notes` the lines printed under it."""

    name: str
    header: list[str]
    rows: list[list[Any]]
    cells: Optional[list[list[str]]] = None
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        cells = self.cells or [[fmt(v) for v in row] for row in self.rows]
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines + ([""] + self.notes if self.notes else [])) + "\n"


def write_csv(table: Table, path: Path) -> None:
    """The table's values as CSV (missing ones empty)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.header)
        writer.writerows([["" if v is None else v for v in row] for row in table.rows])


def write_table(table: Table, out: Path) -> str:
    """`<out>/<name>.md` and `<out>/<name>.csv`; returns the markdown."""
    write_csv(table, out / f"{table.name}.csv")
    text = table.markdown()
    (out / f"{table.name}.md").write_text(text)
    return text


@dataclass
class Check:
    """A claim and what was measured: PASS / FAIL, or n/a when a run it needs did not finish (ok None)."""

    claim: str
    measured: str
    ok: Optional[bool]

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "FAIL")


def _wandb_columns(table: Table) -> tuple[list[str], list[list[Any]]]:
    """Columns of one type each, as wandb.Table requires: numbers (None when missing) or strings."""
    numeric = [all(v is None or _number(v) is not None for v in col) and any(v is not None for v in col)
               for col in zip(*table.rows)] if table.rows else []
    data = [[_number(v) if numeric[j] else ("" if v is None else str(v)) for j, v in enumerate(row)]
            for row in table.rows]
    return list(table.header), data


def wandb_project() -> tuple[str, Optional[str]]:
    """The project and entity of the runs' W&B logger (configs/logger/wandb.yaml, WANDB_PROJECT/ENTITY)."""
    cfg = OmegaConf.load(WANDB_CONFIG).wandb
    return str(cfg.project), cfg.entity


def log_to_wandb(group: str, out: Path, tables: Sequence[Table], figures: Sequence[Path] = ()) -> Optional[Path]:
    """Log the tables (wandb.Table) and figures (wandb.Image) to a `report` run in W&B group `group`,
    its files under `<out>/wandb/`. Returns that run's directory, or None when W&B failed (said in the log)."""
    try:
        import wandb

        from experiments.glue.logging_setup import decide_offline
        project, entity = wandb_project()
        run = wandb.init(project=project, entity=entity, group=group, job_type="report", name=f"{group}_report",
                         dir=str(out), mode="offline" if decide_offline(None) else "online",
                         settings=wandb.Settings(silent=True, init_timeout=60))
        try:
            for table in tables:
                columns, data = _wandb_columns(table)
                run.log({f"tables/{table.name}": wandb.Table(columns=columns, data=data)})
            for png in figures:
                if Path(png).is_file():
                    run.log({f"figures/{Path(png).stem}": wandb.Image(str(png))})
            run_path = Path(run.dir).parent
        finally:
            run.finish()
        return run_path
    except Exception as err:  # W&B must never fail a recipe
        log.warning("the report was not logged to W&B (%s: %s); the tables are in %s", type(err).__name__, err, out)
        print(f"W&B: report not logged ({type(err).__name__}: {err})", flush=True)
        return None
