"""Configurable domain gap: named render styles with per-field overrides, used by every consumer."""
import numpy as np
import pytest
from omegaconf import OmegaConf

from experiments.glue.cache import DiskCache
from posedistill.analysis import domain_gap
from posedistill.data import SourceImageDataModule, TargetClipDataModule
from posedistill.data.pools import target_pool
from posedistill.data.renderer import SOURCE, TARGET, resolve_style, style_params

NO_CLUTTER = {"clutter": False, "occluder_p": 0.0, "elevation": [10, 25]}


def test_overrides_replace_fields_and_keep_the_name():
    st = resolve_style("target", NO_CLUTTER)
    assert st.name == "target" and not st.clutter and st.occluder_p == 0.0 and st.elevation == (10.0, 25.0)
    assert st.random_colors and st.noise == TARGET.noise  # the rest is the named style's
    assert resolve_style("target", None) is TARGET and resolve_style("source", {}) is SOURCE
    assert style_params(st)["elevation"] == [10.0, 25.0]


def test_named_variants_and_the_synthetic_default(compose_cfg):
    plain = resolve_style("target_plain")
    differ = {k for k, v in style_params(plain).items() if v != style_params(TARGET)[k]}
    assert differ == {"name", "clutter", "occluder_p"} and not plain.clutter and plain.occluder_p == 0.0
    cfg = compose_cfg(["experiment=posedistill/synthetic_oracle_demo"])
    assert cfg.data.target_style == "target_plain" and cfg.stages.source.data.target_style == "target_plain"


def test_unknown_or_malformed_fields_are_named():
    with pytest.raises(ValueError, match="'cluter'"):
        resolve_style("target", {"cluter": False})
    with pytest.raises(ValueError, match="'elevation'"):
        resolve_style("target", {"elevation": [30, 10]})
    with pytest.raises(ValueError, match="'occluders'"):  # at datamodule construction, before any rendering
        TargetClipDataModule(n_clips=1, target_style_overrides={"occluders": 0.0})
    with pytest.raises(ValueError, match="unknown render style 'tgt'"):
        SourceImageDataModule(n_frames=1, target_style="tgt")


def test_the_cache_key_follows_the_style(tmp_path):
    kw = dict(n_clips=1, clip_len=2, seed=0, split="test", cache=DiskCache(tmp_path))
    a = target_pool(**kw)
    b = target_pool(**kw, style=resolve_style("target", NO_CLUTTER))
    assert len(list((tmp_path / "posedistill").glob("target_test-*.npz"))) == 2
    assert not np.array_equal(a["images"], b["images"])
    c = target_pool(**kw, style=resolve_style("target", dict(NO_CLUTTER)))  # same style → the cached file
    np.testing.assert_array_equal(b["images"], c["images"])
    assert len(list((tmp_path / "posedistill").glob("target_test-*.npz"))) == 2


def test_both_datamodules_and_the_domain_gap_render_one_target_style(tmp_path, monkeypatch):
    ov = OmegaConf.create(NO_CLUTTER)  # as Hydra passes it
    src = SourceImageDataModule(n_frames=4, val_clips=1, test_clips=1, clip_len=2, cache=DiskCache(tmp_path),
                                target_style_overrides=ov)
    tgt = TargetClipDataModule(n_clips=1, val_clips=1, test_clips=1, clip_len=2, cache=DiskCache(tmp_path),
                               target_style_overrides=ov)
    assert src.styles() == tgt.styles() and tgt.styles()["target"] == resolve_style("target", NO_CLUTTER)
    assert isinstance(tgt.hparams.target_style_overrides, dict)  # plain types in checkpoints
    src.setup(), tgt.setup()
    np.testing.assert_array_equal(src.test_set.images, tgt.test_set.images.reshape(-1, 64, 64, 3))
    plain = TargetClipDataModule(n_clips=1, val_clips=1, test_clips=1, clip_len=2, cache=DiskCache(tmp_path))
    plain.setup()
    assert not np.array_equal(plain.test_set.images, tgt.test_set.images)

    seen = []
    render = domain_gap.render_clips
    monkeypatch.setattr(domain_gap, "render_clips", lambda p, st, rng: seen.append(st) or render(p, st, rng))

    class Mean:
        training = False

        def eval(self): ...
        def train(self, mode): ...

        def predict_pose(self, images):
            import torch
            return torch.zeros(len(images), 17, 3)

    domain_gap.analyze_domain_gap(Mean(), tgt, tmp_path, n_clips=1, frames_per_clip=2)
    assert resolve_style("target", NO_CLUTTER) in seen and TARGET not in seen and SOURCE in seen
    assert "'clutter': False" in (tmp_path / "domain_gap.md").read_text()


def test_the_experiment_ties_stage_d_to_the_main_data_style(compose_cfg):
    cfg = compose_cfg(["experiment=posedistill/synthetic_adapt_demo", "data.source_style=target",
                       "data.target_style_overrides={clutter: false, elevation: [10, 25]}"])
    want = {"clutter": False, "elevation": [10, 25]}
    assert OmegaConf.to_container(cfg.data.target_style_overrides) == want
    stage_d = OmegaConf.to_container(cfg.stages.source.data, resolve=True)
    assert stage_d["target_style_overrides"] == want and stage_d["source_style"] == "target"
    assert stage_d["target_style"] == cfg.data.target_style
