"""G: shapes, the latent box, per-frame encoding and which parts are trainable."""
import importlib.util

import pytest
import torch

from posedistill.models.image_encoder import ImageEncoder


def _encoder(**kw) -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder(channels=(8, 8, 16, 16, 16), feat_dim=32, **kw)


def test_output_shapes_and_latent_box():
    enc = _encoder(latent_box=0.5)
    with torch.no_grad():
        # large fc weights push h far outside the box; box·tanh(h/box) must stay strictly inside
        enc.fc_latent.weight.mul_(1e3)
        feat, z = enc.features(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    assert feat.shape == (4, 32) and z.shape == (4, 32)
    assert z.abs().max() <= 0.5
    assert z.abs().max() > 0.49  # saturated, so the bound is the box and not the weights


def test_encode_frames_equals_per_frame_forward():
    enc = _encoder().eval()
    clips = torch.rand(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = enc.encode_frames(clips)
        ref = torch.stack([torch.stack([enc(clips[b, t : t + 1])[0] for t in range(3)]) for b in range(2)])
    assert z.shape == (2, 3, 32)
    torch.testing.assert_close(z, ref, rtol=1e-5, atol=1e-6)


def test_set_trainable_only_named_block():
    enc = _encoder()
    params = enc.set_trainable(["block3"])
    block3 = {id(p) for p in enc.blocks["block3"].parameters()}
    assert {id(p) for p in params} == block3
    assert all(p.requires_grad == (id(p) in block3) for p in enc.parameters())
    assert len(enc.set_trainable("all")) == len(list(enc.parameters()))


def test_unknown_part_and_backbone_raise():
    enc = _encoder()
    with pytest.raises(ValueError, match="block9"):
        enc.set_trainable(["block9"])
    with pytest.raises(ValueError, match="backbone"):
        ImageEncoder(backbone="vgg")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision installed")
def test_resnet50_without_torchvision_says_to_install_it():
    with pytest.raises(ImportError, match="torchvision"):
        ImageEncoder(backbone="resnet50", image_size=224)
