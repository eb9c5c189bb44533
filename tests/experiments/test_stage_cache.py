"""Stage cache keys: a stage is retrained exactly when something that shapes its weights changes."""
from __future__ import annotations

from experiments.glue.stages import stage_key


def _keys(compose_cfg, overrides: list[str]) -> dict[str, str]:
    cfg = compose_cfg(["experiment=posedistill/synthetic_adapt_demo", *overrides])
    hashes: dict[str, str] = {}
    for name, stage in cfg.stages.items():
        hashes[name] = stage_key(cfg, stage, hashes)
    return hashes


def test_stage_keys_ignore_run_only_trainer_settings(compose_cfg):
    base = _keys(compose_cfg, [])
    # what the ladder recipe and a quiet command line add: none of it changes a stage's training
    quiet = _keys(compose_cfg, ["++trainer.enable_checkpointing=true", "trainer.enable_model_summary=false",
                                "trainer.log_every_n_steps=3"])
    assert quiet == base


def test_stage_keys_follow_training_changes_and_their_downstream(compose_cfg):
    base = _keys(compose_cfg, [])
    longer = _keys(compose_cfg, ["stages.relations.trainer.max_steps=301"])
    assert [n for n in base if longer[n] != base[n]] == ["relations"]  # the source stage does not use the relations
    reseeded = _keys(compose_cfg, ["seed=7"])
    assert all(reseeded[n] != base[n] for n in base)
    prior = _keys(compose_cfg, ["stages.prior.trainer.max_steps=2401"])
    assert all(prior[n] != base[n] for n in base)  # every later stage builds on the prior
