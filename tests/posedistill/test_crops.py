"""Real-data crop datamodules on tiny files written in the real layouts: crops, poses, splits,
clear errors for missing files and keys, and one-step runs of the two real-data experiments."""
import json
import math

import h5py
import numpy as np
import pytest
from PIL import Image

from posedistill.data import H36MCropDataModule, LabelledCropsDataModule, MPI3DHPCropDataModule
from posedistill.data.crops import EVAL_JOINTS_3DHP, read_crop, square_boxes
from posedistill.data.h36m import CAMERA_IDS

W = 100  # frame width and height in pixels


def _ramp_frame(path, shift: int = 0):
    """RGB frame whose red channel is the column, green the row (+ shift): crops are checkable."""
    x, y = np.meshgrid(np.arange(W), np.arange(W))
    img = np.stack([x * 2, (y + shift) * 2, np.full_like(x, 50)], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=100)


def _keypoints(n: int) -> np.ndarray:
    """(n, 17, 2) keypoints spanning the box x 30..50, y 40..60 (a square, centre (40, 50))."""
    kp = np.zeros((n, 17, 2))
    kp[:, 0], kp[:, 1] = (30, 40), (50, 60)
    kp[:, 2:] = (40, 50)
    return kp


def write_h36m(root, subjects=("S1", "S9"), frames: int = 110):
    g = np.random.default_rng(0)
    pos = {s: {"Walking 1": g.normal(size=(frames, 32, 3)).astype(np.float32)} for s in subjects}
    np.savez(root / "data_3d_h36m.npz", positions_3d=pos)
    kp = {s: {"Walking 1": [_keypoints(frames).astype(np.float32) for _ in CAMERA_IDS]} for s in subjects}
    np.savez(root / "data_2d_h36m_gt.npz", positions_2d=kp, metadata={"num_joints": 17})
    cams = {s: {c: {"orientation": [1.0, 0, 0, 0], "translation": [0.0, 0, 0]} for c in CAMERA_IDS} for s in subjects}
    (root / "cameras.json").write_text(json.dumps(cams))
    for s in subjects:
        for i in range(frames):
            _ramp_frame(root / "frames" / s / f"Walking 1.{CAMERA_IDS[3]}" / f"{i + 1:06d}.jpg")
            _ramp_frame(root / "frames" / s / f"Walking 1.{CAMERA_IDS[0]}" / f"{i + 1:06d}.jpg")
    return pos


def h36m_kwargs(root, **kw):
    return dict(poses_path=str(root / "data_3d_h36m.npz"), keypoints_path=str(root / "data_2d_h36m_gt.npz"),
                cameras_path=str(root / "cameras.json"), frames_dir=str(root / "frames"), train_subjects=["S1"],
                test_subjects=["S9"], cameras=[CAMERA_IDS[0]], test_cameras=[CAMERA_IDS[3]], image_size=16,
                margin=0.0, eval_stride=1, batch_size=2, eval_batch_size=4, **kw)


def write_3dhp(root, n: int = 90, valid=None):
    seq = root / "TS1"
    g = np.random.default_rng(1)
    poses = g.normal(0, 300, (n, 17, 3))
    valid = np.ones(n, int) if valid is None else valid
    seq.mkdir(parents=True)
    with h5py.File(seq / "annot_data.mat", "w") as f:  # v7.3: h5py sees MATLAB's reversed order
        f["univ_annot3"] = poses[:, None]
        f["annot2"] = _keypoints(n)[:, None]
        f["valid_frame"] = valid[:, None]
    for i in range(n):
        _ramp_frame(seq / "imageSequence" / f"img_{i + 1:06d}.jpg", shift=i % 3)
    return poses


def test_square_boxes_and_crops(tmp_path):
    np.testing.assert_allclose(square_boxes(_keypoints(1), margin=0.5), [[25, 35, 55, 65]])
    _ramp_frame(tmp_path / "f.jpg")
    crop = read_crop(tmp_path / "f.jpg", np.array([20.0, 40.0, 60.0, 80.0]), 8).astype(float)
    # red = 2·column, green = 2·row: the crop spans columns 20..60 and rows 40..80
    assert crop[:, 0, 0].mean() == pytest.approx(2 * 22.5, abs=3) and crop[:, -1, 0].mean() == pytest.approx(2 * 57.5, abs=3)
    assert crop[0, :, 1].mean() == pytest.approx(2 * 42.5, abs=3) and crop[-1, :, 1].mean() == pytest.approx(2 * 77.5, abs=3)
    outside = read_crop(tmp_path / "f.jpg", np.array([-50.0, 0.0, 0.0, 50.0]), 4)  # left of the image: black
    assert outside[:, :2].max() <= 5


def test_h36m_crops_frames_clips_and_poses(tmp_path):
    pos = write_h36m(tmp_path)
    dm = H36MCropDataModule(**h36m_kwargs(tmp_path, item="frame"))
    dm.setup()
    assert dm.dims == {"image_size": 16}
    # 110 frames at 50 fps → 66 at 30 fps; frame k of the 30 fps sequence is video frame round(k·5/3)
    assert len(dm.train_set) == 66 and len(dm.test_set) == 66
    b = dm.test_set[3]
    assert b.images.shape == (3, 16, 16) and 0 <= float(b.images.min()) and float(b.images.max()) <= 1
    x = pos["S9"]["Walking 1"][5].astype(np.float64)  # identity extrinsics: camera frame = world
    head_top = (x[15] - 0.5 * (x[1] + x[6])) * 1000
    np.testing.assert_allclose(b.poses[8].numpy(), head_top, rtol=1e-4, atol=1e-2)
    # the box x 30..50, y 40..60: red (2·column) spans 60..100 across the crop
    assert 55 <= 255 * float(b.images[0, :, 0].mean()) <= 70 and 90 <= 255 * float(b.images[0, :, -1].mean()) <= 105
    clips = H36MCropDataModule(**h36m_kwargs(tmp_path, item="clip", clip_len=30, clip_stride=30))
    clips.setup()
    c = clips.train_set[1]
    assert len(clips.train_set) == 2 and c.images.shape == (30, 3, 16, 16) and c.poses.shape == (30, 17, 3)


def test_h36m_crops_name_missing_files_and_keys(tmp_path):
    write_h36m(tmp_path)
    (tmp_path / "cameras.json").write_text(json.dumps({"S1": {}}))
    with pytest.raises(KeyError, match=r"cameras.json.*S1.*54138969"):
        H36MCropDataModule(**h36m_kwargs(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match="data_2d_h36m_gt.npz"):
        H36MCropDataModule(**{**h36m_kwargs(tmp_path), "keypoints_path": str(tmp_path / "nope" / "data_2d_h36m_gt.npz")}).setup()
    write_h36m(tmp_path)
    (tmp_path / "frames" / "S9" / f"Walking 1.{CAMERA_IDS[3]}" / "000003.jpg").unlink()  # video frame 2 = 30 fps frame 1
    dm = H36MCropDataModule(**h36m_kwargs(tmp_path))
    dm.setup()
    with pytest.raises(FileNotFoundError, match=r"S9/Walking 1.60457274/000003.jpg"):
        dm.test_set[1]


def test_3dhp_crops_valid_frames_and_eval_joints(tmp_path):
    valid = np.ones(90, int)
    valid[:10] = 0
    poses = write_3dhp(tmp_path, valid=valid)
    dm = MPI3DHPCropDataModule(str(tmp_path), train_sequences=["TS1"], test_sequences=["TS1"], clip_len=30,
                               image_size=16, eval_batch_size=4)
    dm.setup()
    assert dm.dims["eval_joints"] == list(EVAL_JOINTS_3DHP) and dm.dims["eval_joints"][0] == 0
    assert len(dm.test_set) == 80  # valid frames only
    b = dm.test_set[0]  # frame 10
    root_rel = poses[10] - poses[10, 14]
    np.testing.assert_allclose(b.poses[8].numpy(), root_rel[0], rtol=1e-4, atol=1e-2)  # head_top
    # 90 frames at 25 fps = 3.56 s → 107 frames at 30 fps → clips starting at 0, 30, 60
    assert len(dm.train_set) == 3 and dm.train_set[0].images.shape == (30, 3, 16, 16)
    with h5py.File(tmp_path / "TS1" / "annot_data.mat", "a") as f:
        del f["annot2"]
    with pytest.raises(KeyError, match="TS1/annot_data.mat.*annot2"):
        MPI3DHPCropDataModule(str(tmp_path), train_sequences=["TS1"], test_sequences=["TS1"]).setup()
    with pytest.raises(FileNotFoundError, match="TS2/annot_data.mat"):
        MPI3DHPCropDataModule(str(tmp_path), train_sequences=["TS2"]).setup()


def test_labelled_crops_split_and_errors(tmp_path):
    g = np.random.default_rng(2)
    images = g.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    poses = g.normal(size=(40, 17, 3)).astype(np.float32)
    np.savez(tmp_path / "c.npz", images=images, poses=poses)
    dm = LabelledCropsDataModule(str(tmp_path / "c.npz"), val_fraction=0.1)
    dm.setup()
    assert dm.dims == {"image_size": 16} and len(dm.train_set) == 36 and len(dm.val_set) == 4
    seen = {tuple(dm.train_set[i].poses[0].tolist()) for i in range(36)} | {tuple(dm.val_set[i].poses[0].tolist()) for i in range(4)}
    assert seen == {tuple(p[0].tolist()) for p in poses}  # a partition of the file
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(KeyError, match="bad.npz.*poses"):
        LabelledCropsDataModule(str(tmp_path / "bad.npz")).setup()


def _real_runs(root):
    tiny = ["stages.prior.data.batch_size=8", "stages.motion.data.batch_size=2", "stages.relations.data.batch_size=2",
            "stages.source.model.encoder.backbone=small", "stages.source.model.encoder.image_size=16",
            "stages.source.model.encoder.channels=[4,4,8,8,8]", "stages.source.model.encoder.feat_dim=16",
            "model.head_hidden=[16]", "model.head_dim=8", "++trainer.enable_checkpointing=false"]
    h36m = [f"{k}={v}" for k, v in h36m_kwargs(root).items() if k.endswith(("_path", "frames_dir"))]
    return tiny, h36m


def test_h36m_to_3dhp_runs_one_step_on_tiny_files(tmp_path, compose_cfg):
    from experiments.glue.run import train

    write_h36m(tmp_path)
    write_3dhp(tmp_path)
    tiny, h36m = _real_runs(tmp_path)
    seq = ["stages.prior.data.path", "stages.motion.data.path", "stages.relations.data.path"]
    cfg = compose_cfg(["experiment=posedistill/h36m_to_3dhp", "debug=fdr", *tiny,
                       *[f"{k}={tmp_path / 'data_3d_h36m.npz'}" for k in seq],
                       "stages.prior.data.train_subjects=[S1]", "stages.motion.data.train_subjects=[S1]",
                       "stages.relations.data.train_subjects=[S1]", "stages.prior.data.test_subjects=[S9]",
                       "stages.motion.data.test_subjects=[S9]", "stages.relations.data.test_subjects=[S9]",
                       *[f"stages.source.data.{x}" for x in h36m], "stages.source.data.train_subjects=[S1]",
                       "stages.source.data.test_subjects=[S9]", f"stages.source.data.cameras=[{CAMERA_IDS[0]}]",
                       "stages.source.data.image_size=16", "stages.source.data.num_workers=0",
                       f"data.root={tmp_path}", "data.train_sequences=[TS1]", "data.test_sequences=[TS1]",
                       "data.clip_len=30", "model.seq_len=15", "data.image_size=16", "data.num_workers=0"])
    metrics = train(cfg)
    for key in ("test/pa_mpjpe", "test/pck", "test/auc"):
        assert math.isfinite(metrics[key]), key


def test_surreal_to_h36m_runs_one_step_on_tiny_files(tmp_path, compose_cfg):
    from experiments.glue.run import train

    write_h36m(tmp_path)
    g = np.random.default_rng(3)
    np.savez(tmp_path / "crops.npz", images=g.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8),
             poses=g.normal(0, 300, (20, 17, 3)).astype(np.float32))
    tiny, h36m = _real_runs(tmp_path)
    cfg = compose_cfg(["experiment=posedistill/surreal_to_h36m", "debug=fdr", *tiny,
                       *[f"stages.{s}.data.{k}={v}" for s in ("prior", "motion", "relations")
                         for k, v in (("n_clips", 4), ("val_clips", 2))],
                       f"stages.source.data.path={tmp_path / 'crops.npz'}", *[f"data.{x}" for x in h36m],
                       "data.train_subjects=[S1]", "data.test_subjects=[S9]", f"data.cameras=[{CAMERA_IDS[0]}]",
                       "data.clip_len=30", "model.seq_len=15", "data.image_size=16", "data.num_workers=0"])
    metrics = train(cfg)
    for key in ("test/mpjpe", "test/pa_mpjpe"):
        assert math.isfinite(metrics[key]), key
