"""Config validation before anything is built: every `_target_` node is checked against the
signature of what it instantiates (unknown keys, wrong types), and named quantities against their
allowed ranges. Every message starts with the full config key: `<key> must be <what>, got <value>`,
or `<key> is not a key of <target> (valid keys: ...)`."""
from __future__ import annotations

import inspect
import typing
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_", "upstream"}
# parameter name -> (predicate, requirement); checked wherever the name appears under a `_target_`
RANGES = {
    **{k: (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1") for k in (
        "rank", "embedding_dim", "hidden_dim", "batch_size", "latent_dim", "n_units", "n_observed",
        "trials_per_condition", "max_epochs", "n_inits", "steps")},
    **{k: (lambda v: v > 0, "a number > 0") for k in (
        "lr", "embedding_lr", "shared_lr", "lr_disc", "dt", "tau", "duration_s")},
    **{k: (lambda v: v >= 0, "a number >= 0") for k in (
        "noise_std", "obs_noise", "embedding_l2", "weight_decay", "embedding_init_std", "num_workers",
        "warmup_s", "val_steps")},
    "final_fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}
# names of the types a config value can take, for the messages
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _matches(value: Any, hint: Any) -> bool:
    """Loose runtime check of a value against a type hint (None, numbers, str, bool, sequences)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple) or str(origin) == "<class 'collections.abc.Sequence'>":
        return isinstance(value, (list, tuple))
    return True


def _describe(hint: Any) -> str:
    """`a number`, `an integer or null`, ... for a type hint."""
    if typing.get_origin(hint) is typing.Union or str(typing.get_origin(hint)) == "<class 'types.UnionType'>":
        return " or ".join(dict.fromkeys(_describe(h) for h in typing.get_args(hint)))
    if typing.get_origin(hint) in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return "a list"
    return TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hints(target) -> tuple[dict, dict, bool]:
    fn = target.__init__ if inspect.isclass(target) else target
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: skip type checks, keep key checks
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if n != "self"}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return params, hints, var_kw


def _check_node(node: DictConfig, path: str) -> None:
    target_name = node._target_
    try:
        target = get_object(target_name)
    except Exception as err:
        raise ConfigError(f"{path}._target_ must name an importable class or function, got {target_name!r} "
                          f"({' '.join(str(err.__cause__ or err).split())})") from err
    params, hints, var_kw = _hints(target)
    for key in node.keys():
        if key in HYDRA_KEYS:
            continue
        full = f"{path}.{key}" if path else key
        if key not in params and not var_kw:
            valid = ", ".join(sorted(n for n in params if not n.startswith("_")))
            raise ConfigError(f"{full} is not a key of {target_name} (valid keys: {valid})")
        value = node._get_node(key)
        if OmegaConf.is_missing(node, key) or isinstance(value, (DictConfig, ListConfig)):
            continue
        value = node[key]
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"{full} must be {_describe(hints[key])}, got {value!r} ({type(value).__name__})")
        if key in RANGES and value is not None:
            ok, requirement = RANGES[key]
            if not (_is_number(value) and ok(value)):
                raise ConfigError(f"{full} must be {requirement}, got {value!r}")
    _check_optimizer(node, path, params)


def _check_optimizer(node: DictConfig, path: str, params: dict) -> None:
    """An `optimizer` partial must not set what the model sets per parameter group itself (its rates
    and weight decay): the model's value would silently win."""
    optimizer = node._get_node("optimizer") if "optimizer" in node else None
    if not isinstance(optimizer, DictConfig):
        return
    for key in optimizer.keys():
        if key not in HYDRA_KEYS and key in params:
            raise ConfigError(f"{path}.optimizer.{key} must be left out: {node._target_} sets each parameter "
                              f"group's {key} itself, from {path}.{key}")


def _walk(node: Any, path: str) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_node(node, path)
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)):
                _walk(node[key], f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node):
            _walk(child, f"{path}[{i}]")


def validate(cfg: DictConfig) -> None:
    """Check the run's buildable groups (data, model, loss, trainer, callbacks, logger, analysis, stages)."""
    for group in ("data", "model", "loss", "trainer", "callbacks", "logger", "analysis", "stages"):
        if cfg.get(group) is not None:
            _walk(cfg[group], group)
