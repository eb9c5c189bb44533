"""Real-data loaders read small files written in the real layouts and reject wrong keys/shapes."""
import h5py
import numpy as np
import pytest
from scipy.io import savemat

from posedistill.data.h36m import h36m_poses, load_positions_2d, load_positions_3d, world_to_camera
from posedistill.data.mpi_inf_3dhp import PCK14_PAPER17, load_3dhp_test, to_paper17_common


def _write_h36m(path, shape=(5, 32, 3)):
    g = np.random.default_rng(0)
    pos = {"S1": {"Walking": g.normal(size=shape).astype(np.float32)},
           "S9": {"Photo": g.normal(size=shape).astype(np.float32)}}
    np.savez_compressed(path, positions_3d=pos)
    return pos


def test_h36m_3d_roundtrip_and_mapping(tmp_path):
    pos = _write_h36m(tmp_path / "data_3d_h36m.npz")
    data = load_positions_3d(tmp_path / "data_3d_h36m.npz")
    np.testing.assert_array_equal(data["S1"]["Walking"], pos["S1"]["Walking"])
    poses = h36m_poses(data, ["S9"], "paper17")
    x = pos["S9"]["Photo"].astype(np.float64)
    pelvis = 0.5 * (x[:, 1] + x[:, 6])
    np.testing.assert_allclose(poses["S9/Photo"][:, 8], (x[:, 15] - pelvis) * 1000, rtol=1e-5, atol=1e-3)
    h17 = h36m_poses(data, ["S1"], "h36m17")["S1/Walking"]
    np.testing.assert_allclose(h17[:, 10], (x_ := pos["S1"]["Walking"].astype(np.float64))[:, 15] * 1000 - x_[:, 0] * 1000,
                               rtol=1e-5, atol=1e-3)


def test_h36m_world_to_camera_identity_quaternion_is_translation():
    x = np.random.default_rng(1).normal(size=(3, 32, 3))
    np.testing.assert_allclose(world_to_camera(x, np.array([1.0, 0, 0, 0]), np.array([1.0, 2.0, 3.0])), x - [1, 2, 3])
    # 90° about z: quaternion (cos 45°, 0, 0, sin 45°); the inverse rotation maps x-axis to −y
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(world_to_camera(np.array([1.0, 0, 0]), q, np.zeros(3)), [0, -1, 0], atol=1e-12)


def test_h36m_rejects_wrong_keys_and_shapes(tmp_path):
    np.savez(tmp_path / "bad_key.npz", positions=np.zeros(1))
    with pytest.raises(KeyError, match="bad_key.npz.*positions_3d"):
        load_positions_3d(tmp_path / "bad_key.npz")
    _write_h36m(tmp_path / "bad_shape.npz", shape=(5, 17, 3))
    with pytest.raises(ValueError, match=r"bad_shape.npz.*positions_3d\['S1'\]\['Walking'\].*\(5, 17, 3\)"):
        load_positions_3d(tmp_path / "bad_shape.npz")


def test_h36m_2d_layout(tmp_path):
    cams = [np.zeros((7, 17, 2), np.float32) for _ in range(4)]
    meta = {"num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d={"S1": {"Walking": cams}}, metadata=meta)
    data, m = load_positions_2d(tmp_path / "data_2d_h36m_gt.npz")
    assert len(data["S1"]["Walking"]) == 4 and m["num_joints"] == 17
    np.savez(tmp_path / "bad2d.npz", positions_2d={"S1": {"Walking": cams[:3]}}, metadata=meta)
    with pytest.raises(ValueError, match="bad2d.npz.*3 cameras"):
        load_positions_2d(tmp_path / "bad2d.npz")


def _annot(n=6):
    g = np.random.default_rng(2)
    return g.normal(0, 300, (n, 17, 3)), np.array([1, 1, 0, 1, 0, 1]), np.arange(n) % 7 + 1


def test_3dhp_reads_matlab_v5_and_v73(tmp_path):
    poses, valid, act = _annot()
    # v5 (scipy): MATLAB-shaped (3, 17, 1, F) and (1, F)
    savemat(tmp_path / "v5.mat", {"univ_annot3": poses.transpose(2, 1, 0)[:, :, None, :],
                                  "valid_frame": valid[None], "activity_annotation": act[None]})
    # v7.3 (HDF5): h5py sees MATLAB's reversed order (F, 1, 17, 3) and (F, 1)
    with h5py.File(tmp_path / "v73.mat", "w") as f:
        f["univ_annot3"] = poses[:, None]
        f["valid_frame"] = valid[:, None]
    for name in ("v5.mat", "v73.mat"):
        out = load_3dhp_test(tmp_path / name)
        np.testing.assert_allclose(out["poses"], poses - poses[:, 14:15], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(out["valid"], valid.astype(bool))
    np.testing.assert_array_equal(load_3dhp_test(tmp_path / "v5.mat")["activity"], act)
    p17, mask = to_paper17_common(load_3dhp_test(tmp_path / "v73.mat")["poses"])
    assert mask.sum() == 15 and not mask[12] and not mask[16]
    assert len(PCK14_PAPER17) == 14 and all(mask[j] for j in PCK14_PAPER17)


def test_3dhp_rejects_wrong_keys_and_shapes(tmp_path):
    poses, valid, _ = _annot()
    savemat(tmp_path / "nokey.mat", {"annot3": poses, "valid_frame": valid[None]})
    with pytest.raises(KeyError, match="nokey.mat.*univ_annot3"):
        load_3dhp_test(tmp_path / "nokey.mat")
    savemat(tmp_path / "shape.mat", {"univ_annot3": poses[:, :16], "valid_frame": valid[None]})
    with pytest.raises(ValueError, match="shape.mat.*univ_annot3.*\\(6, 16, 3\\)"):
        load_3dhp_test(tmp_path / "shape.mat")


def test_h36m_sequence_datamodule_cuts_resampled_clips(tmp_path):
    from posedistill.data import H36MSequenceDataModule

    g = np.random.default_rng(4)
    pos = {s: {"Walking 1": g.normal(size=(110, 32, 3)).astype(np.float32)} for s in ("S1", "S9")}
    np.savez(tmp_path / "h.npz", positions_3d=pos)
    dm = H36MSequenceDataModule(str(tmp_path / "h.npz"), train_subjects=["S1"], test_subjects=["S9"], item="clip",
                                batch_size=1)
    dm.setup()
    # 110 frames at 50 fps = 2.18 s → 66 frames at 30 fps → one 60-frame clip
    assert dm.heldout_clips().shape == (1, 60, 17, 3)
    x = pos["S9"]["Walking 1"].astype(np.float64)
    p17 = x[:, 15] - 0.5 * (x[:, 1] + x[:, 6])  # head_top relative to the hip midpoint, frame 0
    np.testing.assert_allclose(dm.heldout_clips()[0, 0, 8].numpy(), np.array([p17[0, 0], -p17[0, 2], p17[0, 1]]) * 1000,
                               rtol=1e-4, atol=1e-2)
