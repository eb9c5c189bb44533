"""Motion generator, relation transforms, pools and datamodules."""
import numpy as np
import torch

from experiments.glue.cache import DiskCache
from posedistill.data import ClipBatch, ImageBatch, PoseSequenceDataModule, SourceImageDataModule, TargetClipDataModule
from posedistill.data.motion import generate_clips
from posedistill.data.pools import sequence_pool
from posedistill.data.transforms import motion_pair, pose_transform
from posedistill.skeleton import bone_lengths, flip_pose


def test_generator_is_seeded_and_keeps_subject_bone_lengths():
    a = generate_clips(5, 60, np.random.default_rng(3))
    b = generate_clips(5, 60, np.random.default_rng(3))
    np.testing.assert_array_equal(a.poses, b.poses)
    assert a.poses.shape == (5, 60, 17, 3)
    lengths = bone_lengths(torch.from_numpy(a.poses)).numpy()
    np.testing.assert_allclose(lengths, np.broadcast_to(a.bones[:, None], lengths.shape), rtol=1e-4)
    assert np.abs(a.poses[:, 1:] - a.poses[:, :-1]).mean() > 1.0  # it moves
    np.testing.assert_array_equal(a.poses[..., 0, :], 0)  # root-relative


def test_motion_pairs_follow_the_definitions():
    raw = torch.arange(60.0)[None, :, None, None].expand(2, 60, 17, 3).clone()
    a, p = motion_pair("slow_backward", raw)
    torch.testing.assert_close(a, raw[:, ::2])
    torch.testing.assert_close(p, raw[:, 15:45].flip(1))
    a, p = motion_pair("flip_backward", raw)
    torch.testing.assert_close(a, raw[:, :30])
    torch.testing.assert_close(p, flip_pose(raw[:, :30]).flip(1))
    a, p = motion_pair("fast", raw)
    torch.testing.assert_close(a, raw[:, 15:45])
    torch.testing.assert_close(p, raw[:, ::2])
    pose = torch.tensor([[[0.0, 0.0, 0.0]] + [[100.0, 0.0, 5.0]] * 16])
    r = pose_transform("rot30", pose)
    torch.testing.assert_close(r[0, 1], torch.tensor([100 * np.cos(np.pi / 6), 100 * np.sin(np.pi / 6), 5.0]).float())


def test_speed_preserving_relations_train_on_the_native_speed_clips_stage_e_uses():
    """Stage E applies T^v_flip_backward to E_m(G(raw[:, :seq_len])) (30 consecutive frames); stage C
    must regress it on the same native-speed anchors, not on double-speed ``raw[:, ::2]``."""
    raw = torch.arange(60.0)[None, :, None, None].expand(2, 60, 17, 3).clone()  # value = frame index
    for name, positive in (("backward", lambda x: x.flip(1)), ("flip", flip_pose),
                           ("flip_backward", lambda x: flip_pose(x).flip(1))):
        a, p = motion_pair(name, raw)
        assert torch.equal(a[0, :, 1, 2], torch.arange(30.0)), name  # frames 0..29, one frame apart
        torch.testing.assert_close(p, positive(raw[:, :30]))


def test_pools_are_cached_and_disjoint(tmp_path):
    a = sequence_pool(3, 60, seed=0, cache=DiskCache(tmp_path))
    assert len(list((tmp_path / "posedistill").glob("sequences-*.npz"))) == 1
    b = sequence_pool(3, 60, seed=0, cache=DiskCache(tmp_path))  # from the cache
    np.testing.assert_array_equal(a["poses"], b["poses"])
    v = sequence_pool(3, 60, seed=0, split="val", cache=DiskCache(tmp_path))
    assert not np.allclose(a["poses"], v["poses"])


def test_datamodules_yield_documented_batches(tmp_path):
    dm = PoseSequenceDataModule(n_clips=6, val_clips=2, item="clip", batch_size=4, cache=DiskCache(tmp_path))
    dm.setup()
    assert next(iter(dm.train_dataloader())).poses.shape == (4, 60, 17, 3)
    assert dm.heldout_clips().shape == (2, 60, 17, 3)
    src = SourceImageDataModule(n_frames=20, val_clips=1, test_clips=1, clip_len=4, batch_size=8, cache=DiskCache(tmp_path))
    src.setup()
    b = next(iter(src.train_dataloader()))
    assert isinstance(b, ImageBatch) and b.images.shape == (8, 3, 64, 64) and b.poses.shape == (8, 17, 3)
    assert torch.equal(b.images[:, 0], b.images[:, 1])  # grey replicated
    assert len(src.test_set) == 4
    tgt = TargetClipDataModule(n_clips=2, val_clips=1, test_clips=1, clip_len=4, batch_size=2, cache=DiskCache(tmp_path))
    tgt.setup()
    c = next(iter(tgt.train_dataloader()))
    assert isinstance(c, ClipBatch) and c.images.shape == (2, 4, 3, 64, 64) and c.poses.shape == (2, 4, 17, 3)
    assert 0.0 <= c.images.min() and c.images.max() <= 1.0
    # val/test pools are shared between the two image datamodules (same seeds → same frames)
    torch.testing.assert_close(next(iter(tgt.test_dataloader())).images[0], torch.stack([src.test_set[i].images for i in range(4)]))
