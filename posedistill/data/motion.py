"""Procedural human motion: joint angles driven by an action library of sinusoid mixtures,
chained through subject-specific bone lengths into paper17 poses at 30 FPS.

Body frame: x = the person's left, y = up, z = the person's forward. Output poses are in camera
coordinates (x right along the image, y down, z away from the camera), root-relative, in mm.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posedistill.skeleton import PAPER17

FPS = 30.0
ANGLES = ("trunk_pitch", "trunk_roll", "trunk_twist", "head_pitch",
          "r_sh_flex", "r_sh_abd", "r_elbow", "l_sh_flex", "l_sh_abd", "l_elbow",
          "r_hip_flex", "r_hip_abd", "r_knee", "l_hip_flex", "l_hip_abd", "l_knee",
          "r_ankle", "l_ankle")
_IDX = {a: i for i, a in enumerate(ANGLES)}
# anatomical limits in degrees, per angle kind
_LIMITS = {"trunk_pitch": (-20, 90), "trunk_roll": (-30, 30), "trunk_twist": (-45, 45),
           "head_pitch": (-30, 45), "sh_flex": (-60, 180), "sh_abd": (0, 180), "elbow": (0, 150),
           "hip_flex": (-30, 120), "hip_abd": (-10, 60), "knee": (0, 150), "ankle": (-30, 40)}
_REST = {"r_sh_abd": 10.0, "l_sh_abd": 10.0, "r_elbow": 10.0, "l_elbow": 10.0, "r_knee": 5.0, "l_knee": 5.0}

PI = np.pi
# action → (frequency range Hz, [(angle, base, amplitude, harmonic, phase), ...]); both sides
# are listed explicitly so that left/right asymmetric actions (one-arm wave, kick) stay so.
ACTIONS: dict[str, tuple[tuple[float, float], list[tuple[str, float, float, int, float]]]] = {
    "walk": ((0.7, 1.2), [("r_hip_flex", 10, 25, 1, 0), ("l_hip_flex", 10, 25, 1, PI),
                          ("r_knee", 20, 20, 1, PI / 2), ("l_knee", 20, 20, 1, -PI / 2),
                          ("r_sh_flex", 0, 20, 1, PI), ("l_sh_flex", 0, 20, 1, 0),
                          ("r_elbow", 20, 10, 1, PI), ("l_elbow", 20, 10, 1, 0),
                          ("trunk_twist", 0, 6, 1, 0)]),
    "run": ((1.2, 2.0), [("r_hip_flex", 20, 40, 1, 0), ("l_hip_flex", 20, 40, 1, PI),
                         ("r_knee", 55, 45, 1, PI / 2), ("l_knee", 55, 45, 1, -PI / 2),
                         ("r_sh_flex", 0, 40, 1, PI), ("l_sh_flex", 0, 40, 1, 0),
                         ("r_elbow", 85, 10, 1, 0), ("l_elbow", 85, 10, 1, 0),
                         ("trunk_pitch", 12, 3, 2, 0)]),
    "jumping_jack": ((0.6, 1.2), [("r_sh_abd", 90, 80, 1, 0), ("l_sh_abd", 90, 80, 1, 0),
                                  ("r_hip_abd", 15, 15, 1, 0), ("l_hip_abd", 15, 15, 1, 0),
                                  ("r_knee", 10, 10, 2, 0), ("l_knee", 10, 10, 2, 0)]),
    "squat": ((0.3, 0.7), [("r_hip_flex", 50, 50, 1, 0), ("l_hip_flex", 50, 50, 1, 0),
                           ("r_knee", 60, 60, 1, 0), ("l_knee", 60, 60, 1, 0),
                           ("trunk_pitch", 20, 20, 1, 0), ("r_sh_flex", 45, 45, 1, 0),
                           ("l_sh_flex", 45, 45, 1, 0), ("r_ankle", 10, 10, 1, 0), ("l_ankle", 10, 10, 1, 0)]),
    "wave_one": ((0.8, 2.0), [("r_sh_abd", 140, 15, 1, 0), ("r_sh_flex", 20, 10, 1, PI / 2),
                              ("r_elbow", 45, 35, 1, 0), ("trunk_roll", 0, 4, 1, 0)]),
    "wave_two": ((0.8, 2.0), [("r_sh_abd", 140, 15, 1, 0), ("l_sh_abd", 140, 15, 1, PI),
                              ("r_elbow", 45, 35, 1, 0), ("l_elbow", 45, 35, 1, PI)]),
    "punch": ((0.6, 1.5), [("r_sh_flex", 70, 20, 1, 0), ("l_sh_flex", 70, 20, 1, PI),
                           ("r_elbow", 75, 65, 1, PI), ("l_elbow", 75, 65, 1, 0),
                           ("r_sh_abd", 20, 5, 1, 0), ("l_sh_abd", 20, 5, 1, 0),
                           ("trunk_twist", 0, 15, 1, 0), ("r_knee", 15, 0, 1, 0), ("l_knee", 15, 0, 1, 0)]),
    "kick": ((0.4, 0.9), [("r_hip_flex", 35, 45, 1, 0), ("r_knee", 45, 40, 1, PI / 2),
                          ("l_knee", 10, 5, 1, 0), ("r_sh_abd", 35, 10, 1, 0), ("l_sh_abd", 35, 10, 1, 0),
                          ("trunk_pitch", -5, 5, 1, PI), ("r_ankle", 20, 15, 1, 0)]),
    "taichi": ((0.3, 0.5), [("r_sh_flex", 60, 30, 1, 0), ("l_sh_flex", 60, 30, 1, PI / 2),
                            ("r_sh_abd", 40, 30, 1, PI / 2), ("l_sh_abd", 40, 30, 1, PI),
                            ("r_elbow", 50, 20, 1, 0), ("l_elbow", 50, 20, 1, PI / 2),
                            ("r_knee", 25, 10, 1, 0), ("l_knee", 25, 10, 1, 0),
                            ("r_hip_flex", 20, 8, 1, 0), ("l_hip_flex", 20, 8, 1, 0),
                            ("trunk_twist", 0, 20, 1, 0)]),
    "bend_reach": ((0.3, 0.6), [("trunk_pitch", 40, 40, 1, 0), ("r_sh_flex", 60, 50, 1, 0),
                                ("l_sh_flex", 60, 50, 1, 0), ("r_knee", 10, 10, 1, 0),
                                ("l_knee", 10, 10, 1, 0), ("head_pitch", 10, 10, 1, 0)]),
    "idle": ((0.3, 0.6), [("trunk_roll", 0, 5, 1, 0), ("r_sh_abd", 10, 5, 1, 0),
                          ("l_sh_abd", 10, 5, 1, PI), ("head_pitch", 5, 8, 1, PI / 3),
                          ("r_hip_abd", 5, 3, 1, 0), ("l_hip_abd", 5, 3, 1, PI)]),
}
ACTION_NAMES = tuple(ACTIONS)
# Mix A (source) favours walk, wave and idle; mix B (target, unpaired) adds run, kick, squat, jumping-jack.
MIXES = {
    "A": {"walk": 3, "wave_one": 2, "wave_two": 1, "idle": 3, "punch": 1, "bend_reach": 1, "taichi": 1},
    "B": {"walk": 2, "run": 2, "jumping_jack": 2, "squat": 2, "kick": 2, "wave_one": 1, "wave_two": 1,
          "punch": 1, "taichi": 1, "bend_reach": 1, "idle": 1},
}
# bone → bone type (shared by left and right): spine, shoulder, upper arm, forearm, head, hip, thigh, shin, foot
_BONE_TYPE = (0, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8)


@dataclass
class MotionClips:
    """Generated clips: poses (n, T, 17, 3) mm camera frame root-relative, action (n,) index into
    ACTION_NAMES, bones (n, 16) subject bone lengths mm, elevation (n,) degrees."""

    poses: np.ndarray
    action: np.ndarray
    bones: np.ndarray
    elevation: np.ndarray


def _rot(axis: int, deg: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about a coordinate axis by ``deg`` degrees (right-handed)."""
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    o, z = np.ones_like(t), np.zeros_like(t)
    if axis == 0:
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == 1:
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.stack([np.stack(r, -1) for r in m], -2)


def _apply(r: np.ndarray, v) -> np.ndarray:
    return np.einsum("...ij,...j->...i", r, np.broadcast_to(np.asarray(v, dtype=r.dtype), r.shape[:-1]))


def _limit(name: str) -> tuple[float, float]:
    key = name if name in _LIMITS else name.split("_", 1)[1]
    return _LIMITS[key]


def sample_subjects(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 16) bone lengths: canonical × global scale U(0.9, 1.1) × per-type jitter ±5 %."""
    scale = rng.uniform(0.9, 1.1, size=(n, 1))
    jitter = rng.uniform(0.95, 1.05, size=(n, 9))[:, _BONE_TYPE]
    return (PAPER17.canonical_bones[None] * scale * jitter).astype(np.float32)


def action_angles(action: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Joint angles (n, T, len(ANGLES)) in degrees for clips of the given action indices."""
    n = len(action)
    t = np.arange(n_frames) / FPS
    out = np.zeros((n, n_frames, len(ANGLES)))
    for a, i in _REST.items():
        out[..., _IDX[a]] = i
    freq = np.empty(n)
    for k, name in enumerate(ACTION_NAMES):
        sel = action == k
        lo, hi = ACTIONS[name][0]
        freq[sel] = rng.uniform(lo, hi, size=sel.sum())
    phase0 = rng.uniform(0, 2 * PI, size=(n, 1))
    amp = rng.uniform(0.7, 1.3, size=(n, 1))
    phi = 2 * PI * freq[:, None] * t[None] + phase0  # (n, T)
    for k, name in enumerate(ACTION_NAMES):
        sel = np.flatnonzero(action == k)
        for ang, base, a, harm, ph in ACTIONS[name][1]:
            out[sel, :, _IDX[ang]] = base + a * amp[sel] * np.sin(harm * phi[sel] + ph)
    out += rng.uniform(-5, 5, size=(n, 1, len(ANGLES)))  # per-clip style offsets
    noise = np.zeros((n, len(ANGLES)))
    for f in range(n_frames):  # AR(1) angle noise
        noise = 0.95 * noise + rng.normal(0, 0.8, size=noise.shape)
        out[:, f] += noise
    for i, ang in enumerate(ANGLES):
        lo, hi = _limit(ang)
        out[..., i] = np.clip(out[..., i], lo, hi)
    return out


def forward_kinematics(angles: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Angles (..., len(ANGLES)) deg and bone lengths (..., 16) → body-frame joints (..., 17, 3)."""
    a = {name: angles[..., i] for i, name in enumerate(ANGLES)}
    length = {j: bones[..., b] for b, j in enumerate(PAPER17.children)}
    shape = angles.shape[:-1]
    joints = np.zeros(shape + (17, 3))
    trunk = _rot(1, a["trunk_twist"]) @ _rot(2, a["trunk_roll"]) @ _rot(0, a["trunk_pitch"])
    down = np.array([0.0, -1.0, 0.0])
    joints[..., 1, :] = _apply(trunk, [0, 1, 0]) * length[1][..., None]
    joints[..., 8, :] = joints[..., 1, :] + _apply(trunk @ _rot(0, a["head_pitch"]), [0, 1, 0]) * length[8][..., None]
    for side, sgn, (sh, el, wr) in (("r", -1.0, (2, 3, 4)), ("l", 1.0, (5, 6, 7))):
        joints[..., sh, :] = joints[..., 1, :] + _apply(trunk, [sgn, 0, 0]) * length[sh][..., None]
        arm = trunk @ _rot(2, sgn * a[f"{side}_sh_abd"]) @ _rot(0, -a[f"{side}_sh_flex"])
        joints[..., el, :] = joints[..., sh, :] + _apply(arm, down) * length[el][..., None]
        fore = arm @ _rot(0, -a[f"{side}_elbow"])
        joints[..., wr, :] = joints[..., el, :] + _apply(fore, down) * length[wr][..., None]
    for side, sgn, (hp, kn, an, ft) in (("r", -1.0, (9, 10, 11, 12)), ("l", 1.0, (13, 14, 15, 16))):
        joints[..., hp, 0] = sgn * length[hp]
        leg = _rot(2, sgn * a[f"{side}_hip_abd"]) @ _rot(0, -a[f"{side}_hip_flex"])
        joints[..., kn, :] = joints[..., hp, :] + _apply(leg, down) * length[kn][..., None]
        shin = leg @ _rot(0, a[f"{side}_knee"])
        joints[..., an, :] = joints[..., kn, :] + _apply(shin, down) * length[an][..., None]
        foot = shin @ _rot(0, -90.0 + a[f"{side}_ankle"])
        joints[..., ft, :] = joints[..., an, :] + _apply(foot, down) * length[ft][..., None]
    return joints


def body_to_camera(joints: np.ndarray, yaw: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Body-frame joints (..., 17, 3) → camera frame, for a person turned by ``yaw`` (deg, 0 =
    facing the camera) seen from a camera pitched down by ``elevation`` (deg)."""
    to_cam = np.diag([1.0, -1.0, -1.0])
    r = _rot(0, elevation) @ to_cam @ _rot(1, yaw)  # (..., 3, 3)
    return np.einsum("...ij,...kj->...ki", r, joints)


def generate_clips(n_clips: int, n_frames: int, rng: np.random.Generator, mix: str = "B",
                   elevation: tuple[float, float] = (0.0, 35.0), actions: np.ndarray | None = None) -> MotionClips:
    """Sample ``n_clips`` clips of ``n_frames`` frames at 30 FPS from an action mix."""
    if mix not in MIXES:
        raise ValueError(f"unknown action mix {mix!r}; choose from {sorted(MIXES)}")
    if actions is None:
        names = list(MIXES[mix])
        w = np.array([MIXES[mix][k] for k in names], dtype=float)
        idx = rng.choice(len(names), size=n_clips, p=w / w.sum())
        actions = np.array([ACTION_NAMES.index(names[i]) for i in idx])
    bones = sample_subjects(n_clips, rng)
    angles = action_angles(actions, n_frames, rng)
    body = forward_kinematics(angles, np.broadcast_to(bones[:, None], (n_clips, n_frames, 16)))
    t = np.arange(n_frames) / FPS
    yaw = rng.uniform(0, 360, size=(n_clips, 1)) + rng.uniform(-30, 30, size=(n_clips, 1)) * t[None]
    elev = rng.uniform(*elevation, size=n_clips)
    cam = body_to_camera(body, yaw, np.broadcast_to(elev[:, None], yaw.shape))
    return MotionClips(cam.astype(np.float32), actions.astype(np.int64), bones, elev.astype(np.float32))
