"""Stage cache keys: a stage is retrained exactly when something that shapes its weights changes."""
from __future__ import annotations

import pytest

from experiments.glue.stages import stage_key


def _keys(compose_cfg, overrides: list[str], experiment: str = "posedistill/synthetic_adapt_demo") -> dict[str, str]:
    cfg = compose_cfg([f"experiment={experiment}", *overrides])
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


def _train_or_reuse_slowly(stage_dir: str, log_file: str, result_file: str) -> None:
    """One run's stage step: training takes a while and appends to ``log_file``; the outcome (trained /
    reused, and the weights it ended with) goes to ``result_file``."""
    import time
    from pathlib import Path

    from experiments.glue.stages import train_or_reuse

    loaded = {}

    def fit() -> None:
        with open(log_file, "a") as f:
            f.write("trained\n")
        time.sleep(1.0)  # a second run started meanwhile must wait, not train the same directory too
        Path(stage_dir).mkdir(parents=True, exist_ok=True)
        (Path(stage_dir) / "model.ckpt").write_text("weights-1")
        loaded["weights"] = "weights-1"

    trained = train_or_reuse("prior", Path(stage_dir), lambda ckpt: loaded.update(weights=ckpt.read_text()), fit)
    Path(result_file).write_text(f"{trained} {loaded['weights']}")


def test_runs_started_together_train_a_shared_stage_once(tmp_path):
    import multiprocessing as mp

    stage_dir, log_file = tmp_path / "stages" / "prior-abc", tmp_path / "fits.log"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_train_or_reuse_slowly, args=(str(stage_dir), str(log_file), str(tmp_path / f"run{i}")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert log_file.read_text() == "trained\n"  # one fit
    outcomes = sorted((tmp_path / f"run{i}").read_text() for i in range(2))
    assert outcomes == ["False weights-1", "True weights-1"]  # the other run waited, then reused its weights
