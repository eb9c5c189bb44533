"""A Hydra search space in W&B's sweep schema: checks, the sweep config, and the local sampler that
stands in for W&B's controller offline.

The space is the `wandb_sweep` node of an `hparams_search=wandb_<name>` config: W&B's sweep schema
(method, run_cap, parameters) with Hydra override keys as parameter names (`model.lr`, or a group such
as `model`). The metric is added from `optimized_metric` / `optimized_mode`.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

METHODS = ("grid", "random", "bayes")
# distributions the local sampler draws; W&B's own controller (online) knows more
LOCAL_DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "log_uniform_values")


class SearchSpaceError(ValueError):
    """A search space W&B or the local sampler cannot use; the message names the key."""


def sweep_config(cfg: DictConfig, source: str) -> dict:
    """The W&B sweep config of `cfg.wandb_sweep`, checked against the composed run config `cfg`."""
    def at(key: str) -> str:
        return f"wandb_sweep.{key} ({source})"

    space = OmegaConf.to_container(cfg.wandb_sweep, resolve=True)
    method = space.get("method")
    if method not in METHODS:
        raise SearchSpaceError(f"{at('method')}: {method!r} is not one of {', '.join(METHODS)}")
    params = space.get("parameters") or {}
    if not params:
        raise SearchSpaceError(f"{at('parameters')}: empty; give at least one override key")
    config_dir = Path(__file__).resolve().parents[2] / "configs"
    for key, spec in params.items():
        if not isinstance(spec, dict):
            raise SearchSpaceError(f"{at('parameters.' + key)}: expected a W&B parameter (values, value or "
                                   f"min and max), got {spec!r}")
        bare = key.lstrip("+")
        if not key.startswith("+") and OmegaConf.select(cfg, bare, default="__absent__") == "__absent__" \
                and not (config_dir / bare).is_dir():
            raise SearchSpaceError(f"{at('parameters.' + key)}: no such key in the composed config "
                                   f"(prefix it with + to add a new key)")
        distribution(spec, at("parameters." + key))
        if method == "grid" and "value" not in spec and "values" not in spec:
            raise SearchSpaceError(f"{at('parameters.' + key)}: a grid needs `values` or `value`, got {spec}")
    run_cap = space.get("run_cap")
    if method != "grid" and not (isinstance(run_cap, int) and run_cap >= 1):
        raise SearchSpaceError(f"{at('run_cap')}: a {method} search needs a number of trials >= 1, got {run_cap!r}")
    goal = "maximize" if cfg.get("optimized_mode", "max") == "max" else "minimize"
    return {"name": str(cfg.get("task_name")), **space, "metric": {"name": cfg.optimized_metric, "goal": goal}}


def distribution(spec: dict, where: str) -> str:
    """The parameter's distribution, inferred as W&B does when it is not named."""
    if "distribution" in spec:
        return spec["distribution"]
    if "value" in spec:
        return "constant"
    if "values" in spec:
        if not spec["values"]:
            raise SearchSpaceError(f"{where}.values: empty")
        return "categorical"
    if "min" in spec and "max" in spec:
        return "int_uniform" if all(isinstance(spec[k], int) for k in ("min", "max")) else "uniform"
    raise SearchSpaceError(f"{where}: give `values`, `value` or `min` and `max` (got {spec})")


def n_trials(config: dict) -> int:
    """run_cap, or for a grid without one, the grid's size."""
    if config["method"] == "grid":
        size = math.prod(len(s.get("values", [None])) for s in config["parameters"].values())
        return min(size, config.get("run_cap") or size)
    return config["run_cap"]


def local_trials(config: dict, seed: int) -> list[dict[str, Any]]:
    """The parameter sets of every trial, drawn without a W&B server.

    grid: the product of the `values` in key order (W&B's grid order); random: independent seeded draws
    of each parameter. W&B's `bayes` needs its server-side model, so offline it is drawn as random.
    """
    params = config["parameters"]
    n = n_trials(config)
    if config["method"] == "grid":
        keys = list(params)
        axes = [params[k]["values"] if "values" in params[k] else [params[k]["value"]] for k in keys]
        return [dict(zip(keys, combo)) for combo in itertools.islice(itertools.product(*axes), n)]
    rng = np.random.default_rng(seed)
    return [{key: _draw(spec, rng, key) for key, spec in params.items()} for _ in range(n)]


def _draw(spec: dict, rng: np.random.Generator, key: str) -> Any:
    kind = distribution(spec, key)
    if kind == "constant":
        return spec["value"]
    if kind == "categorical":
        return spec["values"][int(rng.choice(len(spec["values"]), p=spec.get("probabilities")))]
    if kind == "uniform":
        return float(rng.uniform(spec["min"], spec["max"]))
    if kind == "int_uniform":
        return int(rng.integers(spec["min"], spec["max"] + 1))
    return float(math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))))  # log_uniform_values


def check_local(config: dict, source: str) -> None:
    """Fail before any trial when the local sampler cannot draw a parameter."""
    for key, spec in config["parameters"].items():
        where = f"wandb_sweep.parameters.{key} ({source})"
        kind = distribution(spec, where)
        if kind not in LOCAL_DISTRIBUTIONS:
            raise SearchSpaceError(f"{where}: distribution {kind!r} needs W&B's controller (online); "
                                   f"the local sampler draws {', '.join(LOCAL_DISTRIBUTIONS)}")
        if kind in ("uniform", "int_uniform", "log_uniform_values"):
            if not all(isinstance(spec.get(k), (int, float)) for k in ("min", "max")) or spec["min"] > spec["max"]:
                raise SearchSpaceError(f"{where}: {kind} needs numbers min <= max, got {spec}")
            if kind == "log_uniform_values" and spec["min"] <= 0:
                raise SearchSpaceError(f"{where}: log_uniform_values needs min > 0, got {spec['min']}")


_BARE = re.compile(r"[\w./\-+:@]+")


def hydra_override(key: str, value: Any) -> str:
    """`key=value` in Hydra's override grammar."""
    return f"{key}={_hydra_value(value)}"


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.fullmatch(text) and not _reads_as_other_type(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reads_as_other_type(text: str) -> bool:
    """True when Hydra would read the bare string as a number, bool or null."""
    if text.lower() in ("true", "false", "null"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
