"""Stages A–C train on tiny data; the non-localness analysis and its selection rule."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from experiments.glue.cache import DiskCache
from posedistill.analysis.nonlocalness import analyze_nonlocalness, select
from posedistill.data import PoseSequenceDataModule
from posedistill.skeleton import PAPER17, bone_lengths
from posedistill.stages.motion import MotionStage
from posedistill.stages.prior import PosePriorStage
from posedistill.stages.relations import RelationStage

PRESETS = {
    "paper": {},
    "released_code": dict(latent_box=10.0, discriminator="pose", cycles=True, gan_loss="l1", rec_weight=100.0,
                          cycle_weight=100.0, adv_weight=5.0),
}


def _fit(model, dm, steps):
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, dm)
    return trainer


@pytest.fixture(scope="module")
def pose_dm(tmp_path_factory):
    dm = PoseSequenceDataModule(n_clips=20, val_clips=4, batch_size=64, cache=DiskCache(tmp_path_factory.mktemp("c")))
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def clip_dm(pose_dm):
    dm = PoseSequenceDataModule(n_clips=20, val_clips=4, batch_size=8, item="clip", cache=pose_dm.cache)
    dm.setup()
    return dm


def _val_mpjpe(prior, dm):
    poses = dm.heldout_clips()[:, ::6].flatten(0, 1)
    with torch.no_grad():
        return (prior.decode(prior.encode(poses)) - prior.target(poses)).norm(dim=-1).mean().item()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_tiny_prior_trains_and_decodes_skeleton_bone_ratios(pose_dm, preset):
    torch.manual_seed(0)
    prior = PosePriorStage(warmup_steps=10, **PRESETS[preset])
    before = _val_mpjpe(prior, pose_dm)
    _fit(prior, pose_dm, 120)  # 60 batches (2 optimizer steps each)
    after = _val_mpjpe(prior, pose_dm)
    assert after < 0.8 * before
    z = prior.sample_latent(256, torch.Generator().manual_seed(1))
    assert z.abs().max() <= prior.latent_box
    lengths = bone_lengths(prior.decode(z))
    ratios = lengths / lengths.sum(-1, keepdim=True)
    canon = torch.as_tensor(PAPER17.canonical_bones)
    torch.testing.assert_close(ratios, (canon / canon.sum()).expand_as(ratios), rtol=1e-4, atol=1e-6)
    assert prior.bone_ratio_error().item() < 1e-4


@pytest.fixture(scope="module")
def trained(pose_dm, clip_dm):
    torch.manual_seed(0)
    prior = PosePriorStage(warmup_steps=10)
    _fit(prior, pose_dm, 60)
    prior.eval().requires_grad_(False)
    motion = MotionStage(upstream={"prior": prior}, hidden=16, dim_v=24)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    _fit(motion, clip_dm, 4)
    for k, v in prior.state_dict().items():  # the prior stays frozen
        assert torch.equal(v, before[k])
    motion.eval().requires_grad_(False)
    rel = RelationStage(upstream={"prior": prior, "motion": motion}, pose_relations=["flip", "rot5", "rot0"],
                        pose_hidden=[32], motion_hidden=[32])
    _fit(rel, clip_dm, 4)
    return prior, motion, rel


def test_motion_and_relation_shapes(trained, clip_dm):
    prior, motion, rel = trained
    clips = clip_dm.heldout_clips()[:2]
    v = motion.encode_poses(clips[:, :30])
    assert v.shape == (2, 24) and v.abs().max() <= 10.0
    assert motion.decode(v).shape == (2, 30, 32)
    assert rel.pose_relation("flip")(prior.encode(clips[:, 0])).shape == (2, 32)
    assert rel.motion_relation("slow_backward")(v).shape == (2, 24)
    with pytest.raises(KeyError, match="no pose relation"):
        rel.pose_relation("rot45")


def test_nonlocalness_analysis_outputs(trained, clip_dm, tmp_path):
    _, _, rel = trained
    out = analyze_nonlocalness(rel, clip_dm, tmp_path / "fig", max_clips=4)
    assert out["d_pose_rot0"] == 0.0  # the identity relation couples a pose with itself
    assert out["d_pose_flip"] > out["d_pose_rot5"] > 0
    assert sum(out[f"selected_pose_{r}"] for r in ("flip", "rot5", "rot0")) == 1
    assert sum(v for k, v in out.items() if k.startswith("selected_motion_")) == 2
    assert out["rank_pose_flip"] == 1.0 and out["selected_pose_flip"] == 1.0
    for name in ("nonlocalness.png", "nonlocalness.md", "nonlocalness.csv"):
        assert (tmp_path / "fig" / name).stat().st_size > 0
    rows = (tmp_path / "fig" / "nonlocalness.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3 + 6


def test_selection_rule_skips_redundant_displacements():
    e = torch.eye(3)
    stats = {"a": {"d": 3.0, "disp": e[[0, 0]]}, "b": {"d": 2.0, "disp": 2 * e[[0, 0]]},
             "c": {"d": 1.0, "disp": e[[1, 2]]}, "d": {"d": 0.5, "disp": e[[2, 1]]}}
    out = select(stats, top_k=2, cos_threshold=0.8)
    assert [k for k in "abcd" if out[k]["selected"]] == ["a", "c"]  # b is parallel to a (cos 1)
    assert [out[k]["rank"] for k in "abcd"] == [1, 2, 3, 4]
    assert out["b"]["max_cos"] == pytest.approx(1.0) and np.isnan(out["a"]["max_cos"])


def test_checkpoint_hparams_load_with_weights_only(tmp_path):
    from omegaconf import OmegaConf

    hidden = OmegaConf.create({"h": [16, 16]}).h  # what Hydra passes
    prior = PosePriorStage(hidden=hidden, disc_hidden=hidden)
    dm = PoseSequenceDataModule(n_clips=2, val_clips=1, elevation=OmegaConf.create({"e": [0.0, 35.0]}).e)
    # what Lightning stores in a checkpoint: the module's and the datamodule's hyper-parameters
    torch.save({"hyper_parameters": dict(prior.hparams), "datamodule_hyper_parameters": dict(dm.hparams)},
               tmp_path / "a.ckpt")
    ckpt = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert tuple(ckpt["hyper_parameters"]["hidden"]) == (16, 16)
    assert tuple(ckpt["datamodule_hyper_parameters"]["elevation"]) == (0.0, 35.0)
