"""Run sizes (configs/size/): a size merges the experiment's table after the experiment, the _demo
experiments are the demo size, and a size without a table for the experiment is a config error."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from experiments.glue.schemas import ConfigError
from experiments.glue.sizes import check_size_table, size_table
from tests.conftest import CONFIG_DIR


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def _values(cfg) -> dict:
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


@pytest.mark.parametrize("experiment", ["jedi/multifreq", "jedi/flipflop", "posedistill/synthetic_dann"])
def test_a_demo_experiment_is_its_experiment_at_the_demo_size(experiment):
    demo = _values(_compose([f"experiment={experiment}_demo"]))
    sized = _values(_compose([f"experiment={experiment}", "size=demo"]))
    assert {k: v for k, v in demo.items() if k != "tags"} == {k: v for k, v in sized.items() if k != "tags"}
    assert "demo" in demo["tags"]


def test_a_size_overrides_the_experiment_with_its_table_and_the_command_line_wins():
    table = OmegaConf.load(f"{CONFIG_DIR}/size/jedi/multifreq/tiny.yaml")
    paper = _compose(["experiment=jedi/multifreq"])
    tiny = _compose(["experiment=jedi/multifreq", "size=tiny", "model.infer.val_steps=7"])
    assert paper.trainer.max_epochs != table.trainer.max_epochs
    assert tiny.trainer.max_epochs == table.trainer.max_epochs
    assert tiny.data.source.n_units == table.data.source.n_units
    assert tiny.model.infer.steps == table.model.infer.steps
    assert tiny.model.infer.val_steps == 7  # a command-line value beats the size
    assert tiny.model.embedding_tie == paper.model.embedding_tie  # the experiment's keys the table leaves alone
    # the demo experiment asked for at another size takes that size
    assert _compose(["experiment=jedi/multifreq_demo", "size=tiny"]).trainer.max_epochs == table.trainer.max_epochs


def test_a_size_the_experiment_has_no_table_for_is_a_config_error_naming_its_sizes():
    cfg = _compose(["experiment=jedi/flipflop", "size=small"])
    with pytest.raises(ConfigError, match=r"size must be one of the sizes of experiment=jedi/flipflop "
                                          r"\(paper, demo, tiny; .*got 'small'"):
        check_size_table(cfg.hydra.runtime.choices)
    with pytest.raises(ConfigError, match="size must be paper without an experiment"):
        check_size_table(_compose(["size=tiny"]).hydra.runtime.choices)
    check_size_table(_compose(["experiment=jedi/flipflop", "size=tiny"]).hydra.runtime.choices)
    check_size_table(_compose(["experiment=posedistill/h36m_to_3dhp"]).hydra.runtime.choices)  # paper: no table


def test_size_table_reads_the_tables_it_includes():
    dann = size_table("posedistill/synthetic_dann", "small")
    assert dann["task_name"] == "posedistill_synthetic_dann_small"  # its own key over the included ones
    assert dann["data"] == size_table("posedistill/synthetic_adapt", "demo")["data"]
    assert size_table("jedi/multifreq", "paper") == {}
