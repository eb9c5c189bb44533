"""Stage E: only the configured block moves, round-robin optimisers, source-only identity, and a
tiny end-to-end run of the synthetic experiment through the framework with debug=fdr."""
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from posedistill.stages.adapt import ENERGIES, AdaptStage
from experiments.bench.adapt_step import reference_energy
from tests.posedistill.conftest import TINY_SYNTHETIC, clip_batch


class _Clips(Dataset):
    def __init__(self, batch):
        self.batch = batch

    def __len__(self):
        return len(self.batch.images)

    def __getitem__(self, i):
        return type(self.batch)(*(x[i] for x in self.batch))


def _fit(model: pl.LightningModule, max_steps: int) -> None:
    loader = DataLoader(_Clips(clip_batch(6)), batch_size=3, shuffle=False)
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("trainable", [["block3"], ["block2", "embed"]])
def test_only_configured_block_changes(upstream, trainable):
    model = AdaptStage(upstream, trainable=trainable, lr={e: 1e-2 for e in ENERGIES})
    names = model.encoder.part_names
    before = {n: _snapshot(model.encoder.part(n)) for n in names}
    up0 = {n: _snapshot(upstream[n]) for n in ("prior", "motion", "relations")}
    _fit(model, max_steps=len(ENERGIES))  # one step of every energy
    for name in names:
        after = model.encoder.part(name).state_dict()
        moved = any(not torch.equal(v, before[name][k]) for k, v in after.items())
        assert moved == (name in trainable), f"{name}: moved={moved}, trainable={trainable}"
    for n, before in up0.items():
        assert all(torch.equal(v, before[k]) for k, v in upstream[n].state_dict().items()), f"upstream {n} changed"


class _Recording(AdaptStage):
    """Records which optimiser stepped, in order, and the block3 weights each energy's loss saw."""

    def configure_optimizers(self):
        opts = super().configure_optimizers()
        self.order = []
        for i, opt in enumerate(opts):
            opt.register_step_post_hook(lambda *_, i=i: self.order.append(i))
        return opts


def test_each_batch_is_one_round_of_every_optimiser_in_turn(upstream):
    model = _Recording(upstream)
    _fit(model, max_steps=2 * len(ENERGIES))  # two batches of 3 clips
    assert model.order == [*range(len(ENERGIES))] * 2
    assert model.trainer.global_step == 2 * len(ENERGIES)  # manual optimisation: one step per energy


def test_round_energies_see_the_previous_energys_update(upstream):
    """Within a round the frozen prefix is shared, but each energy's forward runs after the update
    of the one before: its loss equals the image-level loss of the updated weights."""
    model = AdaptStage(upstream, energies=["flip", "flip_backward"], lr={"flip": 1e-1, "flip_backward": 1e-1})
    raw = clip_batch(3).images
    opts = model.configure_optimizers()
    pre = model.prefix_features(raw)
    model.energy("flip", pre).backward()
    opts[0].step()
    with torch.no_grad():
        shared = model.energy("flip_backward", pre)
        direct = reference_energy(model, "flip_backward", raw, torch.Generator())
    torch.testing.assert_close(shared, direct)


@pytest.mark.parametrize("trainable", [["block3"], ["block2", "embed"], "all"])
def test_prefix_energies_equal_the_image_level_formulas(upstream, trainable):
    """Energies on shared frozen-prefix features = the spec's formulas with every image through the
    whole of G (same augmented view), values and block gradients."""
    model = AdaptStage(upstream, trainable=trainable)
    raw = clip_batch(3).images
    state = model._gen.get_state()  # the reference draws the same augmented view
    pre = model.prefix_features(raw)
    for name in ENERGIES:
        params = model.energy_params(name)
        loss = model.energy(name, pre)
        gen = torch.Generator()
        gen.set_state(state)
        ref_loss = reference_energy(model, name, raw, gen)
        torch.testing.assert_close(loss, ref_loss, msg=name)
        grads = [torch.autograd.grad(x, params, allow_unused=True) for x in (loss, ref_loss)]
        for a, b in zip(*grads):  # None: a parameter the energy does not use (LCR reads no z)
            assert (a is None) == (b is None), name
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_each_energy_has_its_own_adam_over_block_and_head(upstream):
    model = AdaptStage(upstream, energies=["lcr", "flip"], lr={"lcr": 3e-4, "flip": 7e-5})
    opts = model.configure_optimizers()
    block = {id(p) for p in model.encoder.blocks["block3"].parameters()}
    lcr_head = {id(p) for p in model.heads["lcr"].parameters()}
    assert [o.param_groups[0]["lr"] for o in opts] == [3e-4, 7e-5]
    assert {id(p) for p in opts[0].param_groups[0]["params"]} == block | lcr_head
    assert {id(p) for p in opts[1].param_groups[0]["params"]} == block


def test_source_only_predicts_like_the_source_model(upstream):
    model = AdaptStage(upstream, energies=[]).eval()
    frames = clip_batch(1, 4).images[0]
    with torch.no_grad():
        torch.testing.assert_close(model.predict_pose(frames), upstream["source"].predict_pose(frames))
    assert model.configure_optimizers() is None


def test_energies_are_finite_and_validated(upstream):
    model = AdaptStage(upstream)
    raw = clip_batch(3).images
    for name in ENERGIES:
        assert math.isfinite(float(model.energy(name, raw).detach())), name
    with pytest.raises(ValueError, match="60 frames"):
        model.energy("slow_backward", raw[:, :40])
    with pytest.raises(ValueError, match="bogus"):
        AdaptStage(upstream, energies=["lcr", "bogus"])


def test_end_to_end_fdr_through_the_framework(compose_cfg):
    from experiments.glue.run import train

    cfg = compose_cfg(["experiment=posedistill/synthetic_adapt_demo", "debug=fdr", *TINY_SYNTHETIC,
                       "stages.source.data.batch_size=8"])
    assert list(cfg.model.anchors) == ["source", "pose_distribution"]  # the synthetic full method
    metrics = train(cfg)
    for key in ("train/source", "train/pose_distribution", "test/mpjpe", "test/pa_mpjpe", "test/n_mpjpe", "test/pck", "test/auc", "test/pose_spread_ratio",
                "analysis/domain_gap/source_poses_source_style_pa_mpjpe"):
        assert math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["test/pck"] <= 100.0
    assert metrics["test/pose_spread_ratio"] > 0.0


def test_lcr_frames_makes_other_frames_of_the_same_clip_negatives(upstream):
    """lcr_frames = k: the anchors are k evenly spaced frames of every clip, their positives the same
    frames' augmented views, and every other anchor (same clip included) is a negative."""
    from posedistill.losses.contrastive import info_nce, pose_invariant_augment

    model = AdaptStage(upstream, energies=["lcr"], lcr_frames=3)
    assert model.lcr_frame_index() == [0, 14, 29]
    assert AdaptStage(upstream, energies=["lcr"]).lcr_frame_index() == [0]  # the code's frame 0
    raw = clip_batch(2).images
    state = model._gen.get_state()
    loss = model.energy("lcr", raw)
    gen = torch.Generator()
    gen.set_state(state)
    view = pose_invariant_augment(raw[:, :30], gen, **model.augment_kw)
    frames = lambda clips: clips[:, [0, 14, 29]].flatten(0, 1)  # noqa: E731  (clip-major: 6 anchors)
    head = model.heads["lcr"]
    ref = info_nce(head(model.encoder.features(frames(raw))[0]), head(model.encoder.features(frames(view))[0]))
    torch.testing.assert_close(loss, ref)
    with pytest.raises(ValueError, match="lcr_frames"):
        AdaptStage(upstream, lcr_frames=31)


def _bn_upstream(upstream):
    from posedistill.stages.source import SourceStage
    from posedistill.stages import freeze
    from tests.posedistill.conftest import TINY_ENCODER

    torch.manual_seed(1)
    source = freeze(SourceStage(upstream={"prior": upstream["prior"]}, encoder={**TINY_ENCODER, "norm": "batch"}))
    return {**upstream, "source": source}


def test_adapt_norm_stats_replaces_batchnorm_statistics_by_the_target_ones(upstream):
    """AdaBN: running mean/var become the target frames' statistics, weights stay, modes are restored;
    the energies' batches never move the statistics; a GroupNorm G^s refuses the option."""
    up = _bn_upstream(upstream)
    model = AdaptStage(up, energies=["flip"], adapt_norm_stats=True, lr={"flip": 1e-2})
    model.train()
    stem_bn = model.encoder.blocks["block1"][1]
    assert isinstance(stem_bn, torch.nn.BatchNorm2d) and not stem_bn.training  # eval even in train()
    weights = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" not in k and "num_batches" not in k}
    clips = clip_batch(4).images * 0.5 + 0.3  # a shifted "target" distribution
    loader = [type(clip_batch(2))(clips[:2], None, None), type(clip_batch(2))(clips[2:], None, None)]
    n = model.adapt_norm_stats(loader)
    assert n == 4 * 30
    frames = clips[:, :30].flatten(0, 1)
    with torch.no_grad():  # the stem's BatchNorm input is conv1 of the normalised frames
        h = model.encoder.blocks["block1"][0]((frames - model.encoder.mean) / model.encoder.std)
    torch.testing.assert_close(stem_bn.running_mean, h.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in weights.items())
    assert model.training and not stem_bn.training
    stats = [m.running_mean.clone() for m in model.encoder.batch_norms()]
    _fit(model, max_steps=1)  # on_train_start re-estimates on the fit's clips, then one flip step
    after_fit = [m.running_mean.clone() for m in model.encoder.batch_norms()]
    assert any(not torch.equal(a, b) for a, b in zip(stats, after_fit))  # re-estimated on other clips
    model.energy("flip", clip_batch(3).images)  # a forward of an energy moves no statistic
    assert all(torch.equal(a, m.running_mean) for a, m in zip(after_fit, model.encoder.batch_norms()))
    with pytest.raises(ValueError, match="BatchNorm"):
        AdaptStage(upstream, adapt_norm_stats=True)  # the conftest G^s uses GroupNorm


def test_hcr_windows_makes_the_other_window_of_the_same_clip_a_negative(upstream):
    from posedistill.losses.contrastive import info_nce, pose_invariant_augment

    model = AdaptStage(upstream, energies=["hcr"], hcr_windows=2)
    raw = clip_batch(2).images  # 2 clips × 60 frames → 4 anchors: (clip 0, 1) first window, then second
    state = model._gen.get_state()
    loss = model.energy("hcr", raw)
    gen = torch.Generator()
    gen.set_state(state)
    view = pose_invariant_augment(raw, gen, **model.augment_kw)
    code = lambda clips: model.motion.encode(model.encoder.encode_frames(clips))  # noqa: E731
    windows = lambda x: torch.cat([x[:, :30], x[:, 30:60]])  # noqa: E731
    head = model.heads["hcr"]
    torch.testing.assert_close(loss, info_nce(head(code(windows(raw))), head(code(windows(view)))))
    with pytest.raises(ValueError, match="60 frames"):
        model.energy("hcr", raw[:, :45])
    with pytest.raises(ValueError, match="hcr_windows"):
        AdaptStage(upstream, hcr_windows=3)


def test_flip_stop_grad_moves_only_the_anchor_branch(upstream):
    """flip_stop_grad: the pose-flip gradient is that of mean |T^z(G(x)) − c| with c = G(flip x) held
    constant; without it the positive branch adds its own gradient."""
    raw = clip_batch(3).images
    grads = {}
    for stop in (True, False):
        model = AdaptStage(upstream, energies=["flip"], flip_stop_grad=stop)
        pre = model.prefix_features(raw)
        params = model.energy_params("flip")
        grads[stop] = torch.autograd.grad(model.energy("flip", pre), params)
    z = model._encode(pre["raw"])[1]
    constant = model._encode(pre["flipped"])[1].detach()
    ref = (model.relations.pose_relation("flip")(z) - constant).abs().mean()
    for a, b in zip(grads[True], torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(grads[True], grads[False]))


def test_training_logs_the_label_free_pose_spread_of_the_round(upstream):
    """train/pose_spread_mm is the RMS distance of G's root-aligned poses of the round's clips to their
    mean pose (computed here in numpy); with every learning rate 0, G is G^s."""
    model = AdaptStage(upstream, lr={e: 0.0 for e in ENERGIES})
    _fit(model, max_steps=len(ENERGIES))  # one round, on the first 3 clips
    frames = clip_batch(6).images[:3, : model.hparams.seq_len].flatten(0, 1)
    with torch.no_grad():
        poses = model.predict_pose(frames).double().numpy()
    poses = poses - poses[:, :1]
    expected = ((poses - poses.mean(0)) ** 2).sum(-1).mean() ** 0.5
    assert model.trainer.callback_metrics["train/pose_spread_mm"].item() == pytest.approx(expected, rel=1e-4)


class _PairedItems(Dataset):
    """``{"target": ClipBatch, <side>: batch}`` items, as PairedClipDataModule's combined loader yields them."""

    def __init__(self, target, **sides):
        self.target, self.sides = target, sides

    def __len__(self):
        return len(self.target.images)

    def __getitem__(self, i):
        return {name: type(b)(*(x[i] for x in b)) for name, b in {"target": self.target, **self.sides}.items()}


def test_source_anchor_is_the_source_l1_on_the_rounds_labelled_source_batch(upstream):
    """energies with ``source``: a round-robin term mean |D_p(G(x^s)) − y^s| on the source part of a
    paired batch, with its own Adam over the trainable block; it needs source images."""
    from tests.posedistill.conftest import image_batch

    model = AdaptStage(upstream, energies=["flip"], anchors=["source"], lr={"flip": 0.0, "source": 1e-2})
    src, tgt = image_batch(4), clip_batch(2)
    pre = model.prefix_features(tgt.images, source=src)
    with torch.no_grad():
        expected = (model.predict_pose(src.images) - src.poses).abs().mean()
        torch.testing.assert_close(model.energy("source", pre), expected)
    block = _snapshot(model.encoder.blocks["block3"])
    loader = DataLoader(_PairedItems(clip_batch(4), source=image_batch(4)), batch_size=2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)  # one round: flip (lr 0), then source
    assert any(not torch.equal(v, block[k]) for k, v in model.encoder.blocks["block3"].state_dict().items())
    assert "train/source" in trainer.callback_metrics
    with pytest.raises(ValueError, match="data.source"):
        model.energy("source", model.prefix_features(tgt.images))


def test_source_view_anchor_fits_the_source_labels_on_augmented_source_images(upstream):
    """``source_view``: the source anchor is the source L1 on the images' pose-invariant augmented views,
    drawn from the stage's seeded generator (the same draw as an independent copy of it), not on the
    images themselves."""
    from posedistill.losses.contrastive import pose_invariant_augment
    from tests.posedistill.conftest import image_batch

    augment = {"blur": (0.5, 1.0), "translate": 0.08, "noise_std": 0.05}
    model = AdaptStage(upstream, energies=[], anchors=["source"], source_view=True, augment=augment)
    src, tgt = image_batch(4), clip_batch(2)
    gen = torch.Generator().set_state(model._gen.get_state())
    with torch.no_grad():
        loss = model.energy("source", model.prefix_features(tgt.images, source=src))
        expected = (model.predict_pose(pose_invariant_augment(src.images, gen, **augment)) - src.poses).abs().mean()
        plain = (model.predict_pose(src.images) - src.poses).abs().mean()
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, plain)


def test_pose_distribution_anchor_is_the_sliced_wasserstein_to_the_rounds_unpaired_poses(upstream):
    """energies with ``pose_distribution``: the sliced Wasserstein distance between D_p(G(x)) on the
    round's target frames and the round's unpaired poses, along directions from the stage's seeded
    generator; its own Adam moves the trainable block; it needs unpaired poses."""
    from posedistill.data import PoseBatch
    from posedistill.losses.distribution import random_directions, sliced_wasserstein

    g = torch.Generator().manual_seed(1)
    unpaired = PoseBatch(100 * torch.randn(8, 17, 3, generator=g), torch.zeros(8, dtype=torch.long))
    model = AdaptStage(upstream, energies=[], anchors=["pose_distribution"], lr={"pose_distribution": 1e-2},
                       distribution_directions=16)
    tgt = clip_batch(2)
    pre = model.prefix_features(tgt.images, unpaired=unpaired)
    same_draws = torch.Generator()
    same_draws.set_state(model._gen.get_state())
    with torch.no_grad():
        poses = model.predict_pose(tgt.images[:, : model.hparams.seq_len].flatten(0, 1))
        expected = sliced_wasserstein(poses, unpaired.poses, random_directions(51, 16, same_draws))
        torch.testing.assert_close(model.energy("pose_distribution", pre), expected)
    block = _snapshot(model.encoder.blocks["block3"])
    loader = DataLoader(_PairedItems(clip_batch(4), unpaired=unpaired), batch_size=2)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)
    assert any(not torch.equal(v, block[k]) for k, v in model.encoder.blocks["block3"].state_dict().items())
    assert "train/pose_distribution" in trainer.callback_metrics
    with pytest.raises(ValueError, match="data.unpaired"):
        model.energy("pose_distribution", model.prefix_features(tgt.images))


def test_project_codes_compares_the_prior_projection_of_gs_codes(upstream):
    """project_codes: the relation energies see z̃ = E_p(D_p(G(x))), with gradients through the frozen
    prior into the trainable block; G's own prediction D_p(G(x)) is unchanged."""
    raw = clip_batch(2).images
    model = AdaptStage(upstream, energies=["flip", "flip_backward"], project_codes=True)
    pre = model.prefix_features(raw)
    proj = lambda h: model.prior.encode(model.prior.decode(model._encode(h)[1].flatten(0, 1))).unflatten(0, h.shape[:2])  # noqa: E731
    z, z_flip = proj(pre["raw"][:, :30]), proj(pre["flipped"])
    expected = (model.relations.pose_relation("flip")(z) - z_flip).abs().mean()
    loss = model.energy("flip", pre)
    torch.testing.assert_close(loss, expected)
    plain = AdaptStage(upstream, energies=["flip"]).energy("flip", pre)
    assert not torch.allclose(loss, plain)
    grads = torch.autograd.grad(model.energy("flip_backward", pre), model.energy_params("flip_backward"))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    frames = raw[0, :4]
    with torch.no_grad():
        torch.testing.assert_close(model.predict_pose(frames), upstream["source"].predict_pose(frames))


@pytest.mark.parametrize("baseline", ["pseudo_label", "dann", "oracle"])
def test_synthetic_baselines_adapt_the_parts_stage_e_adapts(compose_cfg, baseline):
    """The synthetic benchmark compares methods on one parameter set: every baseline (the oracle bound
    included) trains the parts stage E trains, the blocks after the shared frozen prefix, on the same
    paired batches."""
    full = compose_cfg(["experiment=posedistill/synthetic_adapt_demo"])
    other = compose_cfg([f"experiment=posedistill/synthetic_{baseline}_demo"])
    assert list(full.model.trainable) == ["block3", "block4", "block5", "embed"]
    assert list(other.model.trainable) == list(full.model.trainable)
    assert other.data == full.data and full.data._target_ == "posedistill.data.PairedClipDataModule"
