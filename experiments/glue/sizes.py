"""Run sizes (configs/size/): a size other than `paper` must find the experiment's table of values,
configs/size/<experiment>/<size>.yaml, which configs/train.yaml includes as optional (paper has none)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from experiments.glue.schemas import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TABLE_CHOICE = "size@_global_"  # the defaults-list entry of configs/train.yaml that includes the table


def check_size_table(choices: Mapping[str, Any], config_dir: Path = CONFIG_DIR) -> None:
    """Raise a ConfigError naming the size and the experiment's sizes when the table is missing.

    `choices` is Hydra's `hydra.runtime.choices` of the run (group -> chosen option)."""
    size, table = choices.get("size"), choices.get(TABLE_CHOICE)
    if size in (None, "paper") or table is None or (config_dir / "size" / f"{table}.yaml").is_file():
        return
    experiment = choices.get("experiment")
    if experiment is None:
        raise ConfigError(f"size must be paper without an experiment (the other sizes are tables of an "
                          f"experiment's values, configs/size/<lib>/<name>/<size>.yaml), got '{size}'")
    folder = config_dir / "size" / Path(table).parent
    sizes = ["paper", *sorted(p.stem for p in folder.glob("*.yaml"))]
    raise ConfigError(f"size must be one of the sizes of experiment={experiment} ({', '.join(sizes)}; "
                      f"configs/size/{Path(table).parent}/<size>.yaml), got '{size}'")


def size_table(experiment: str, size: str, config_dir: Path = CONFIG_DIR) -> dict:
    """The values configs/size/<experiment>/<size>.yaml sets (the tables it includes merged under its
    own); empty for `paper` or a missing table."""
    from omegaconf import OmegaConf

    def load(path: Path):
        if not path.is_file():
            return OmegaConf.create({})
        node = OmegaConf.load(path)
        parts = [load(config_dir / f"{d.lstrip('/')}.yaml") for d in node.pop("defaults", [])
                 if isinstance(d, str) and d != "_self_"]
        return OmegaConf.merge(*parts, node) if parts else node
    return OmegaConf.to_container(load(config_dir / "size" / experiment / f"{size}.yaml"))
