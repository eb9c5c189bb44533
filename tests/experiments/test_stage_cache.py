"""Stage cache keys: a stage is retrained exactly when something that shapes its weights changes; stages
are kept in the cache's layout."""
from __future__ import annotations

import pytest

from experiments.glue.cache import DiskCache, config_hash
from experiments.glue.stages import run_stages, stage_key


def _keys(compose_cfg, overrides: list[str], experiment: str = "posedistill/synthetic_adapt_demo") -> dict[str, str]:
    cfg = compose_cfg([f"experiment={experiment}", *overrides])
    hashes: dict[str, str] = {}
    for name, stage in cfg.stages.items():
        hashes[name] = config_hash(stage_key(cfg, stage, hashes))
    return hashes


def test_stage_keys_ignore_run_only_trainer_settings(compose_cfg):
    base = _keys(compose_cfg, [])
    # what the ladder recipe and a quiet command line add: none of it changes a stage's training
    quiet = _keys(compose_cfg, ["++trainer.enable_checkpointing=true", "trainer.enable_model_summary=false",
                                "trainer.log_every_n_steps=3"])
    assert quiet == base


@pytest.mark.parametrize("baseline", ["pseudo_label", "dann", "oracle"])
def test_baselines_reuse_the_ladders_stages(compose_cfg, baseline):
    """A baseline compared with the ladder must start from the same G^s (and priors)."""
    ladder = _keys(compose_cfg, [])
    own = _keys(compose_cfg, [], experiment=f"posedistill/synthetic_{baseline}_demo")
    assert own == {n: ladder[n] for n in own}


def test_stage_keys_follow_training_changes_and_their_downstream(compose_cfg):
    base = _keys(compose_cfg, [])
    longer = _keys(compose_cfg, ["stages.relations.trainer.max_steps=301"])
    assert [n for n in base if longer[n] != base[n]] == ["relations"]  # the source stage does not use the relations
    reseeded = _keys(compose_cfg, ["seed=7"])
    assert all(reseeded[n] != base[n] for n in base)
    prior = _keys(compose_cfg, ["stages.prior.trainer.max_steps=2401"])
    assert all(prior[n] != base[n] for n in base)  # every later stage builds on the prior


def test_stage_keys_ignore_where_the_data_are_cached(compose_cfg):
    base = _keys(compose_cfg, [])
    assert _keys(compose_cfg, ["paths.cache_dir=/elsewhere/cache"]) == base
    assert _keys(compose_cfg, ["stages.source.data.cache=null"]) == base  # built in memory, same training


def test_stages_are_kept_in_the_cache_layout_and_reused(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=jedi/flipflop", "size=tiny", "debug=fdr"])
    cfg.paths.cache_dir = str(tmp_path / "cache")
    run_stages(cfg)
    entry = DiskCache(cfg.paths.cache_dir).path("stages/teacher", stage_key(cfg, cfg.stages.teacher, {}))
    names = {p.name for p in entry.iterdir()} - {"csv"}  # fast_dev_run writes no CSV log
    assert names == {"config.yaml", "metrics.json", "model.ckpt", "model.ckpt.lock"}
    written = (entry / "model.ckpt").stat().st_mtime_ns
    run_stages(cfg)  # reused: the weights are not written again
    assert (entry / "model.ckpt").stat().st_mtime_ns == written
