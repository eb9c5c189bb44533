"""Stage E: only the configured block moves, round-robin optimisers, source-only identity, and a
tiny end-to-end run of the synthetic experiment through the framework with debug=fdr."""
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from posedistill.stages.adapt import ENERGIES, AdaptStage
from experiments.bench.adapt_step import reference_energy
from tests.posedistill.conftest import clip_batch


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

    tiny = ["stages.prior.data.n_clips=8", "stages.motion.data.n_clips=8", "stages.relations.data.n_clips=8",
            "stages.prior.data.val_clips=4", "stages.motion.data.val_clips=4", "stages.relations.data.val_clips=4",
            "stages.source.data.n_frames=64", "stages.source.data.val_clips=1", "stages.source.data.test_clips=1",
            "data.n_clips=8", "data.val_clips=1", "data.test_clips=1", "++trainer.enable_checkpointing=true",
            "analysis.domain_gap.n_clips=2", "analysis.domain_gap.frames_per_clip=2"]
    cfg = compose_cfg(["experiment=posedistill/synthetic_adapt_demo", "debug=fdr", *tiny])
    metrics = train(cfg)
    for key in ("test/mpjpe", "test/pa_mpjpe", "test/n_mpjpe", "test/pck", "test/auc",
                "analysis/domain_gap/source_poses_source_style_pa_mpjpe"):
        assert math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["test/pck"] <= 100.0
