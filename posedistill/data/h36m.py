"""Human3.6M in the VideoPose3D ``.npz`` layout.

``data_3d_h36m.npz``: ``positions_3d`` → {subject: {action: float (frames, 32, 3)}}, world
coordinates in metres (z up), 50 fps. ``data_2d_h36m_<source>.npz``: ``positions_2d`` →
{subject: {action: [4 × (frames, 17, 2)]}} pixels (one array per camera) and ``metadata`` with
``num_joints`` and ``keypoints_symmetry``. Camera frame (after :func:`world_to_camera`): x right,
y down, z forward [inferred]; poses returned in mm, root-relative.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posedistill.skeleton import h36m32_to_h36m17, h36m32_to_paper17

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")


def _load_npz_dict(path: str | Path, key: str) -> dict:
    path = Path(path)
    with np.load(path, allow_pickle=True) as f:
        if key not in f.files:
            raise KeyError(f"{path}: missing key {key!r} (found {f.files})")
        obj = f[key]
        out = obj.item() if obj.dtype == object and obj.shape == () else obj
    if not isinstance(out, dict):
        raise ValueError(f"{path}: field {key!r} must be a dict subject → action → array, got {type(out).__name__}")
    return out


def load_positions_3d(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read ``positions_3d``; every array must be (frames, 32, 3)."""
    data = _load_npz_dict(path, "positions_3d")
    for subject, actions in data.items():
        for action, arr in actions.items():
            arr = np.asarray(arr)
            if arr.ndim != 3 or arr.shape[1:] != (32, 3):
                raise ValueError(f"{path}: positions_3d[{subject!r}][{action!r}] has shape {arr.shape}, "
                                 f"expected (frames, 32, 3)")
    return data


def load_positions_2d(path: str | Path) -> tuple[dict[str, dict[str, list[np.ndarray]]], dict]:
    """Read ``positions_2d`` (4 cameras × (frames, J, 2) with J = metadata num_joints) and ``metadata``."""
    data = _load_npz_dict(path, "positions_2d")
    meta = _load_npz_dict(path, "metadata")
    if "num_joints" not in meta:
        raise KeyError(f"{path}: metadata lacks 'num_joints'")
    j = int(meta["num_joints"])
    for subject, actions in data.items():
        for action, cams in actions.items():
            if len(cams) != len(CAMERA_IDS):
                raise ValueError(f"{path}: positions_2d[{subject!r}][{action!r}] has {len(cams)} cameras, expected 4")
            for c, arr in enumerate(cams):
                if np.ndim(arr) != 3 or np.shape(arr)[1:] != (j, 2):
                    raise ValueError(f"{path}: positions_2d[{subject!r}][{action!r}][{c}] has shape "
                                     f"{np.shape(arr)}, expected (frames, {j}, 2)")
    return data, meta


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by unit quaternions q (4,) = (w, x, y, z)."""
    w, u = q[0], np.asarray(q[1:])
    uv = np.cross(np.broadcast_to(u, v.shape), v)
    uuv = np.cross(np.broadcast_to(u, v.shape), uv)
    return v + 2 * (w * uv + uuv)


def world_to_camera(x: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """World → camera frame (VideoPose3D convention): R⁻¹ (x − t), with the camera orientation
    quaternion R (w, x, y, z) and translation t in the same units as x."""
    q_inv = np.asarray(orientation, dtype=np.float64) * np.array([1, -1, -1, -1])
    return qrot(q_inv, x - np.asarray(translation))


def h36m_poses(positions_3d: dict, subjects, skeleton: str = "paper17", camera: dict | None = None) -> dict[str, np.ndarray]:
    """Root-relative poses in mm, (frames, 17, 3) per ``"<subject>/<action>"``, mapped to
    ``paper17`` (pelvis = hip midpoint) or ``h36m17``. ``camera``: optional {subject:
    {"orientation": q, "translation": t (metres)}} to move into that camera's frame first."""
    if skeleton not in ("paper17", "h36m17"):
        raise ValueError(f"h36m_poses: skeleton must be paper17 or h36m17, got {skeleton!r}")
    out = {}
    for s in subjects:
        if s not in positions_3d:
            raise KeyError(f"positions_3d has no subject {s!r} (found {sorted(positions_3d)})")
        for action, arr in positions_3d[s].items():
            x = np.asarray(arr, dtype=np.float64)
            if camera is not None:
                x = world_to_camera(x, camera[s]["orientation"], camera[s]["translation"])
            p = h36m32_to_paper17(x) if skeleton == "paper17" else h36m32_to_h36m17(x)
            out[f"{s}/{action}"] = ((p - p[:, :1]) * 1000.0).astype(np.float32)
    return out


def world_to_upright_camera(x: np.ndarray) -> np.ndarray:
    """World (z up) → a level virtual camera frame (x right, y down, z forward = world y)."""
    return np.stack([x[..., 0], -x[..., 2], x[..., 1]], -1)


def resample(poses: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Linear temporal resampling of (frames, J, 3) poses."""
    t_out = np.arange(0.0, (len(poses) - 1) / fps_in + 1e-9, 1.0 / fps_out)
    src = t_out * fps_in
    i0 = np.floor(src).astype(int).clip(0, len(poses) - 1)
    i1 = (i0 + 1).clip(0, len(poses) - 1)
    w = (src - i0)[:, None, None]
    return (1 - w) * poses[i0] + w * poses[i1]


def h36m_clips(path: str | Path, subjects, clip_len: int = 60, stride: int = 30, fps: float = 30.0,
               skeleton: str = "paper17") -> dict[str, np.ndarray]:
    """Unpaired pose clips from ``data_3d_h36m.npz`` in the pools' layout: poses (n, clip_len, 17, 3)
    mm, root-relative, upright-camera axes, resampled from 50 to ``fps``; action (n,) index into the
    sorted action names."""
    data = load_positions_3d(path)
    poses = h36m_poses(data, subjects, skeleton)
    actions = sorted({k.split("/", 1)[1].split(" ")[0] for k in poses})
    clips, labels = [], []
    for key, p in sorted(poses.items()):
        seq = world_to_upright_camera(resample(p, 50.0, fps)).astype(np.float32)
        for s in range(0, len(seq) - clip_len + 1, stride):
            clips.append(seq[s : s + clip_len])
            labels.append(actions.index(key.split("/", 1)[1].split(" ")[0]))
    if not clips:
        raise ValueError(f"{path}: no clip of {clip_len} frames for subjects {list(subjects)}")
    return {"poses": np.stack(clips), "action": np.asarray(labels, np.int64)}
