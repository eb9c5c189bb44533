"""MPI-INF-3DHP test annotations (``TS*/annot_data.mat``): ``univ_annot3`` (universal-scale 3D
joints, mm), ``valid_frame`` and optional ``activity_annotation``. MATLAB v7.3 files are HDF5
(read with h5py, which reverses MATLAB's dimension order); older files fall back to scipy.

The 17-joint test order is head_top, neck, r_shoulder, r_elbow, r_wrist, l_shoulder, l_elbow,
l_wrist, r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, pelvis (root), spine, head.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MPI3DHP17_NAMES = ("head_top", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
                   "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "head")
ROOT = 14
# the 15 joints shared with paper17: (paper17 index, 3DHP index)
MPI3DHP_TO_PAPER17 = ((0, 14), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 0),
                      (9, 8), (10, 9), (11, 10), (13, 11), (14, 12), (15, 13))
# 14-joint PCK subset of the MATLAB evaluation (head, neck, shoulders, elbows, wrists, hips, knees, ankles)
PCK14_3DHP = tuple(range(14))
PCK14_PAPER17 = (8, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15)
# frame rates of the test sequences [inferred: TS1–4 studio 25 fps, TS5–6 outdoor 50 fps]
MPI3DHP_TEST_FPS = {"TS1": 25.0, "TS2": 25.0, "TS3": 25.0, "TS4": 25.0, "TS5": 50.0, "TS6": 50.0}


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]) for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except OSError:
        from scipy.io import loadmat

        return {k: v for k, v in loadmat(path).items() if not k.startswith("__")}


def _to_frames(arr: np.ndarray, n_frames: int, path: Path, field: str, dim: int = 3) -> np.ndarray:
    """Squeeze singleton dims and orient to (frames, 17, dim)."""
    a = np.squeeze(np.asarray(arr, dtype=np.float64))
    if a.shape == (n_frames, 17, dim):
        return a
    if a.shape == (dim, 17, n_frames):
        return a.transpose(2, 1, 0)
    raise ValueError(f"{path}: field {field!r} has shape {np.shape(arr)}, expected (frames, 17, {dim}) with "
                     f"frames = {n_frames} (after squeezing singleton dims)")


def load_3dhp_test(path: str | Path) -> dict[str, np.ndarray]:
    """Returns ``poses`` (F, 17, 3) mm root-relative (pelvis), ``valid`` (F,) bool, ``activity`` (F,) int
    (−1 when absent)."""
    path = Path(path)
    mat = _read_mat(path)
    for key in ("univ_annot3", "valid_frame"):
        if key not in mat:
            raise KeyError(f"{path}: missing field {key!r} (found {sorted(mat)})")
    valid = np.squeeze(np.asarray(mat["valid_frame"])).astype(bool).reshape(-1)
    poses = _to_frames(mat["univ_annot3"], len(valid), path, "univ_annot3")
    act = mat.get("activity_annotation")
    activity = np.full(len(valid), -1, np.int64) if act is None else np.squeeze(np.asarray(act)).astype(np.int64).reshape(-1)
    if len(activity) != len(valid):
        raise ValueError(f"{path}: field 'activity_annotation' has {len(activity)} frames, valid_frame has {len(valid)}")
    poses = poses - poses[:, ROOT : ROOT + 1]
    return {"poses": poses.astype(np.float32), "valid": valid, "activity": activity}


def read_annot2(path: str | Path, n_frames: int) -> np.ndarray:
    """The 2D keypoints ``annot2`` of a test ``annot_data.mat`` → (frames, 17, 2) pixels."""
    path = Path(path)
    mat = _read_mat(path)
    if "annot2" not in mat:
        raise KeyError(f"{path}: missing field 'annot2' (found {sorted(mat)})")
    return _to_frames(mat["annot2"], n_frames, path, "annot2", dim=2)


def to_paper17_common(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3DHP poses (..., 17, 3) → paper17 layout (..., 17, 3) and a (17,) mask of the 15 filled joints
    (r_foot and l_foot have no 3DHP counterpart)."""
    out = np.zeros(poses.shape, dtype=poses.dtype)
    mask = np.zeros(17, dtype=bool)
    for p17, m in MPI3DHP_TO_PAPER17:
        out[..., p17, :] = poses[..., m, :]
        mask[p17] = True
    return out, mask
