"""Baselines: pseudo-label fixed point, oracle loss, DANN gradient reversal, paired batches."""
import math

import pytest
import torch

from experiments.glue.cache import DiskCache
from posedistill.data import ClipBatch, ImageBatch, PairedClipDataModule, PoseBatch, PoseSequenceDataModule, SourceImageDataModule
from posedistill.losses.adversarial import domain_loss
from posedistill.stages.baselines import DANNStage, OracleStage, PseudoLabelStage
from tests.posedistill.conftest import TINY_SYNTHETIC, clip_batch, image_batch

NO_AUG = {"brightness": [1.0, 1.0], "channel_gain": 0.0, "noise_std": 0.0}


def test_pseudo_labels_are_a_fixed_point_of_the_source_model(upstream):
    batch = clip_batch(2, 30)
    still = PseudoLabelStage(upstream, augment=NO_AUG, keep_fraction=0.5)
    assert float(still.loss(batch).detach()) == 0.0  # student == teacher, unaugmented view
    jittered = PseudoLabelStage(upstream, keep_fraction=0.5)
    assert float(jittered.loss(batch).detach()) > 0.0
    with pytest.raises(ValueError, match="keep_fraction"):
        PseudoLabelStage(upstream, keep_fraction=0.0)


def test_oracle_loss_is_l1_to_ground_truth(upstream):
    batch = clip_batch(2, 40)
    oracle = OracleStage(upstream, seq_len=30)
    frames, poses = batch.images[:, :30].flatten(0, 1), batch.poses[:, :30].flatten(0, 1)
    with torch.no_grad():
        expected = (upstream["prior"].decode(upstream["source"].encoder(frames)) - poses).abs().mean()
        assert float(oracle.loss(batch)) == pytest.approx(float(expected), rel=1e-5)
    assert all(p.requires_grad for p in oracle.encoder.parameters())  # trainable: all


def test_dann_reverses_the_domain_gradient_into_the_encoder(upstream):
    lam = 0.7
    model = DANNStage(upstream, adv_weight=lam, frames_per_clip=2)
    source, target = image_batch(4), clip_batch(2, 30)
    state = model._gen.get_state()
    with pytest.raises(ValueError, match="data.source"):
        model.loss(target)  # target clips alone: DANN needs the labelled source part of a paired batch
    model._gen.set_state(state)
    model.loss({"source": source, "target": target}).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    # independent: encoder gets ∇(sup − λ·domain), the classifier ∇domain
    model._gen.set_state(state)
    idx = torch.randint(0, 30, (2,), generator=model._gen)
    feat_s, z_s = model.encoder.features(source.images)
    feat_t, _ = model.encoder.features(target.images[:, idx].flatten(0, 1))
    sup = (upstream["prior"].decode(z_s) - source.poses).abs().mean()
    dom = domain_loss(model.domain(feat_s), model.domain(feat_t))
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    enc_grads = torch.autograd.grad(sup - lam * dom, enc, retain_graph=True)
    dom_grads = torch.autograd.grad(dom, list(model.domain.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    for p, g in zip(enc, enc_grads):
        torch.testing.assert_close(got[names[id(p)]], g, rtol=1e-4, atol=1e-6)
    for p, g in zip(model.domain.parameters(), dom_grads):
        torch.testing.assert_close(got[names[id(p)]], g, rtol=1e-4, atol=1e-6)


def test_paired_clip_batches_carry_the_side_pools(tmp_path):
    source = SourceImageDataModule(n_frames=16, val_clips=1, test_clips=1, batch_size=4, cache=DiskCache(tmp_path))
    unpaired = PoseSequenceDataModule(n_clips=2, val_clips=1, item="pose", batch_size=5, cache=DiskCache(tmp_path))
    dm = PairedClipDataModule(source=source, unpaired=unpaired, n_clips=4, val_clips=1, test_clips=1, batch_size=2,
                              cache=DiskCache(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    iter(loader)
    batches = list(loader)
    assert len(batches) == 2  # one epoch = one pass over the target clips (4 / 2), not the 4 source batches
    batch, _, _ = batches[0]
    assert isinstance(batch["source"], ImageBatch) and isinstance(batch["target"], ClipBatch)
    assert isinstance(batch["unpaired"], PoseBatch) and batch["unpaired"].poses.shape == (5, 17, 3)
    assert batch["source"].images.shape == (4, 3, 64, 64) and batch["target"].images.shape == (2, 60, 3, 64, 64)
    assert "source" not in dm.hparams and "unpaired" not in dm.hparams
    with pytest.raises(ValueError, match="data.source and/or data.unpaired"):
        PairedClipDataModule(n_clips=4, cache=DiskCache(tmp_path))


def test_dann_runs_through_the_framework_with_its_own_stage_e_seed(compose_cfg):
    """The ladder recipe reseeds stage E with model.seed; the DANN datamodule's own seed must not clash
    with it (Lightning refuses module and datamodule hyper-parameters that disagree)."""
    from experiments.glue.run import train

    # a real (not fast_dev_run) fit with a logger: the hyper-parameter merge happens only then
    cfg = compose_cfg(["experiment=posedistill/synthetic_dann", "size=tiny", "logger=csv", "model.seed=7", *TINY_SYNTHETIC])
    metrics = train(cfg)
    assert math.isfinite(metrics["test/pa_mpjpe"])
