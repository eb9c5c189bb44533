"""Person crops of real images for stages D and E (spec §8, §11), read lazily from disk, and
their datamodules (batches as in :mod:`posedistill.data.datamodules`).

Layouts (every path is a config field; a missing file or key is an error naming it):

- **Human3.6M** (VideoPose3D): ``data_3d_h36m.npz`` (3D, world, metres), ``data_2d_h36m_gt.npz``
  (2D ground truth per camera, for the crop boxes), ``cameras.json`` = ``{subject: {camera id:
  {"orientation": [w, x, y, z], "translation": [x, y, z] (metres)}}}`` (the extrinsics VideoPose3D
  keeps in its code), and the video frames ``<frames_dir>/<subject>/<action>.<camera id>/<frame:06d>.jpg``
  (action names as in the npz), numbered from 1 at 50 fps. Poses: paper17, camera frame (x right,
  y down, z forward), mm, root-relative.
- **MPI-INF-3DHP test set**: ``<root>/<TSk>/annot_data.mat`` (``annot2``, ``univ_annot3``,
  ``valid_frame``) and frames ``<root>/<TSk>/imageSequence/img_<frame:06d>.jpg`` numbered from 1.
  Poses: ``univ_annot3`` in the paper17 layout (the 15 shared joints; see ``EVAL_JOINTS_3DHP``).
- **Labelled crops file** (any other source, e.g. SURREAL converted by the user): one ``.npz`` with
  ``images`` (N, H, W, 3) uint8 crops and ``poses`` (N, 17, 3) paper17, camera frame, mm; optional
  ``action`` (N,).

A crop is the square around the frame's 2D keypoints, enlarged by ``margin``, resized to
``image_size`` (outside the image is black).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from posedistill.data.datamodules import ClipBatch, FrameDataset, ImageBatch, _image_tensor, _PoolDataModule
from posedistill.data.h36m import CAMERA_IDS, TEST_SUBJECTS, TRAIN_SUBJECTS, h36m_poses, load_positions_2d, load_positions_3d
from posedistill.data.mpi_inf_3dhp import (MPI3DHP_TEST_FPS, MPI3DHP_TO_PAPER17, load_3dhp_test, read_annot2,
                                           to_paper17_common)

# paper17 joints evaluated on 3DHP: the 15 it shares with the 3DHP skeleton, pelvis (root) first
EVAL_JOINTS_3DHP = tuple(sorted(p for p, _ in MPI3DHP_TO_PAPER17))


def square_boxes(keypoints: np.ndarray, margin: float = 0.2) -> np.ndarray:
    """2D keypoints (F, J, 2) pixels → square boxes (F, 4) = (x0, y0, x1, y1) around them, the
    longer side enlarged by ``margin``."""
    lo, hi = keypoints.min(1), keypoints.max(1)  # (F, 2)
    centre, half = (lo + hi) / 2, (hi - lo).max(-1, keepdims=True) * (1 + margin) / 2
    return np.concatenate([centre - half, centre + half], -1)


def read_crop(path: Path, box: np.ndarray, size: int) -> np.ndarray:
    """The square ``box`` of the image at ``path``, resized → uint8 (size, size, 3)."""
    if not path.exists():
        raise FileNotFoundError(f"missing frame {path}")
    with Image.open(path) as img:
        crop = img.convert("RGB").crop(tuple(int(round(v)) for v in box)).resize((size, size), Image.BILINEAR)
    return np.asarray(crop)


class CropSequence:
    """Frame paths (F,), crop boxes (F, 4) and poses (F, 17, 3) of one sequence, with an action id."""

    def __init__(self, paths: list[Path], boxes: np.ndarray, poses: np.ndarray, action: int):
        self.paths, self.boxes, self.poses, self.action = paths, boxes, poses.astype(np.float32), action

    def __len__(self) -> int:
        return len(self.paths)


class CropFrames(Dataset):
    """Single labelled frames ``ImageBatch`` from sequences, every ``stride``-th (``frames`` picks
    within each sequence, e.g. the valid frames)."""

    def __init__(self, seqs: Sequence[CropSequence], size: int, stride: int = 1, frames: Sequence[np.ndarray] | None = None):
        self.seqs, self.size = list(seqs), size
        picks = frames or [np.arange(len(s)) for s in self.seqs]
        self.index = [(i, int(f)) for i, p in enumerate(picks) for f in p[::stride]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> ImageBatch:
        i, f = self.index[k]
        s = self.seqs[i]
        img = _image_tensor(read_crop(s.paths[f], s.boxes[f], self.size))
        return ImageBatch(img, torch.from_numpy(s.poses[f]), torch.tensor(s.action))


class CropClips(Dataset):
    """Clips ``ClipBatch`` of ``clip_len`` consecutive frames, one starting every ``stride`` frames."""

    def __init__(self, seqs: Sequence[CropSequence], size: int, clip_len: int = 60, stride: int = 30):
        self.seqs, self.size, self.clip_len = list(seqs), size, clip_len
        self.index = [(i, f) for i, s in enumerate(self.seqs) for f in range(0, len(s) - clip_len + 1, stride)]
        if not self.index:
            raise ValueError(f"no sequence has {clip_len} frames (lengths {[len(s) for s in self.seqs]})")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> ClipBatch:
        i, f0 = self.index[k]
        s, fr = self.seqs[i], range(f0, f0 + self.clip_len)
        imgs = np.stack([read_crop(s.paths[f], s.boxes[f], self.size) for f in fr])  # (T, H, W, 3)
        return ClipBatch(_image_tensor(imgs), torch.from_numpy(s.poses[f0 : f0 + self.clip_len]), torch.tensor(s.action))


def _require(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing {what}: {path}")
    return path


def _resample_index(n_in: int, fps_in: float, fps_out: float) -> np.ndarray:
    """Indices of the nearest input frames for a ``fps_out`` resampling of ``n_in`` frames."""
    return np.round(np.arange(0.0, (n_in - 1) / fps_in + 1e-9, 1.0 / fps_out) * fps_in).astype(int)


def h36m_sequences(poses_path, keypoints_path, cameras_path, frames_dir, subjects, cameras, fps: float = 30.0,
                   margin: float = 0.2) -> list[CropSequence]:
    """Human3.6M sequences (one per subject, action and camera), resampled from 50 fps to ``fps``;
    action ids index the sorted action names (the part before a space)."""
    positions = load_positions_3d(_require(poses_path, "Human3.6M 3D poses (data_3d_h36m.npz)"))
    kp2d, _ = load_positions_2d(_require(keypoints_path, "Human3.6M 2D keypoints (data_2d_h36m_gt.npz)"))
    extrinsics = json.loads(_require(cameras_path, "Human3.6M camera extrinsics (cameras.json)").read_text())
    frames_dir = _require(frames_dir, "Human3.6M frames directory")
    actions = sorted({a.split(" ")[0] for s in subjects for a in positions.get(s, {})})
    out = []
    for subject in subjects:
        for cam in cameras:
            cam = str(cam)
            if cam not in CAMERA_IDS:
                raise ValueError(f"unknown Human3.6M camera {cam!r}; expected one of {list(CAMERA_IDS)}")
            try:
                ext = extrinsics[subject][cam]
                calib = {subject: {"orientation": np.asarray(ext["orientation"]), "translation": np.asarray(ext["translation"])}}
            except KeyError as err:
                raise KeyError(f"{cameras_path}: no {err} for subject {subject!r}, camera {cam!r}") from None
            poses = h36m_poses(positions, [subject], "paper17", camera=calib)
            for key, p in sorted(poses.items()):
                action = key.split("/", 1)[1]
                if action not in kp2d.get(subject, {}):
                    raise KeyError(f"{keypoints_path}: positions_2d has no [{subject!r}][{action!r}]")
                kp = np.asarray(kp2d[subject][action][CAMERA_IDS.index(cam)])
                n = min(len(p), len(kp))  # VideoPose3D: the 2D may be a few frames shorter
                idx = _resample_index(n, 50.0, fps)
                seq_dir = frames_dir / subject / f"{action}.{cam}"
                paths = [seq_dir / f"{i + 1:06d}.jpg" for i in idx]
                out.append(CropSequence(paths, square_boxes(kp[idx], margin), p[idx], actions.index(action.split(" ")[0])))
    return out


def mpi3dhp_sequences(root, sequences: Sequence[str], fps: float | None = None,
                      margin: float = 0.2) -> tuple[list[CropSequence], list[np.ndarray]]:
    """MPI-INF-3DHP test sequences (``TS1`` …), resampled to ``fps`` (None: every frame), with the
    indices of their valid frames; action ids are the activity annotation of the first valid frame
    (−1 if absent)."""
    root = _require(root, "MPI-INF-3DHP test-set directory")
    seqs, valid = [], []
    for name in sequences:
        if fps is not None and name not in MPI3DHP_TEST_FPS:
            raise ValueError(f"unknown MPI-INF-3DHP test sequence {name!r}; expected one of {list(MPI3DHP_TEST_FPS)}")
        annot = _require(root / name / "annot_data.mat", f"MPI-INF-3DHP annotations of {name}")
        test = load_3dhp_test(annot)
        n = len(test["valid"])
        idx = np.arange(n) if fps is None else _resample_index(n, MPI3DHP_TEST_FPS[name], fps)
        kp = read_annot2(annot, n)[idx]
        poses, _ = to_paper17_common(test["poses"][idx])
        paths = [root / name / "imageSequence" / f"img_{i + 1:06d}.jpg" for i in idx]
        ok = np.flatnonzero(test["valid"][idx])
        action = int(test["activity"][idx][ok[0]]) if len(ok) else -1
        seqs.append(CropSequence(paths, square_boxes(kp, margin), poses, action))
        valid.append(ok)
    return seqs, valid


def load_crops_file(path) -> dict[str, np.ndarray]:
    """A labelled crops ``.npz``: images (N, H, W, 3) uint8, poses (N, 17, 3), action (N,) (zeros if absent)."""
    path = _require(path, "labelled crops file")
    with np.load(path) as f:
        for key in ("images", "poses"):
            if key not in f.files:
                raise KeyError(f"{path}: missing key {key!r} (found {f.files})")
        images, poses = f["images"], f["poses"]
        action = f["action"] if "action" in f.files else np.zeros(len(images), np.int64)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{path}: 'images' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if poses.shape != (len(images), 17, 3):
        raise ValueError(f"{path}: 'poses' must be ({len(images)}, 17, 3), got {poses.shape}")
    return {"images": images, "poses": poses.astype(np.float32), "action": action.astype(np.int64)}


class H36MCropDataModule(_PoolDataModule):
    """Human3.6M crops (layout above). Training: ``item='frame'`` labelled frames of
    ``train_subjects`` (source, stage D; every ``frame_stride``-th frame at ``fps``) or ``'clip'``
    clips of ``clip_len`` frames (unlabelled target, stage E). Val/test: labelled frames of
    ``test_subjects`` seen by ``test_cameras`` (the code: camera 60457274), every ``eval_stride``-th."""

    def __init__(self, poses_path: str, keypoints_path: str, cameras_path: str, frames_dir: str,
                 train_subjects: Sequence[str] = TRAIN_SUBJECTS, test_subjects: Sequence[str] = TEST_SUBJECTS,
                 cameras: Sequence[str] = CAMERA_IDS, test_cameras: Sequence[str] = ("60457274",), item: str = "frame",
                 fps: float = 30.0, clip_len: int = 60, clip_stride: int = 30, frame_stride: int = 1,
                 eval_stride: int = 10, image_size: int = 224, margin: float = 0.2, batch_size: int = 64,
                 eval_batch_size: int = 64, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, eval_batch_size, num_workers, seed, None)
        if item not in ("frame", "clip"):
            raise ValueError(f"data.item must be 'frame' or 'clip', got {item!r}")
        train_subjects, test_subjects = list(train_subjects), list(test_subjects)
        cameras, test_cameras = [str(c) for c in cameras], [str(c) for c in test_cameras]
        self.save_hyperparameters(logger=False)  # the run logs the whole resolved config

    @property
    def dims(self) -> dict:
        return {"image_size": self.hparams.image_size}

    def _sequences(self, subjects, cameras) -> list[CropSequence]:
        h = self.hparams
        return h36m_sequences(h.poses_path, h.keypoints_path, h.cameras_path, h.frames_dir, subjects, cameras,
                              h.fps, h.margin)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        train = self._sequences(h.train_subjects, h.cameras)
        self.train_set = (CropFrames(train, h.image_size, h.frame_stride) if h.item == "frame"
                          else CropClips(train, h.image_size, h.clip_len, h.clip_stride))
        self.val_set = self.test_set = CropFrames(self._sequences(h.test_subjects, h.test_cameras), h.image_size,
                                                  h.eval_stride)


class MPI3DHPCropDataModule(_PoolDataModule):
    """MPI-INF-3DHP test-set crops (layout above). Training: unlabelled clips of ``train_sequences``
    resampled to ``fps`` (target, stage E). Val/test: the valid frames of ``test_sequences`` (every
    ``eval_stride``-th), evaluated on the 15 paper17 joints 3DHP has (``dims['eval_joints']``)."""

    def __init__(self, root: str, train_sequences: Sequence[str] = tuple(MPI3DHP_TEST_FPS),
                 test_sequences: Sequence[str] = tuple(MPI3DHP_TEST_FPS), fps: float = 30.0, clip_len: int = 60,
                 clip_stride: int = 30, eval_stride: int = 1, image_size: int = 224, margin: float = 0.2,
                 batch_size: int = 8, eval_batch_size: int = 64, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, eval_batch_size, num_workers, seed, None)
        train_sequences, test_sequences = list(train_sequences), list(test_sequences)
        self.save_hyperparameters(logger=False)  # the run logs the whole resolved config

    @property
    def dims(self) -> dict:
        return {"image_size": self.hparams.image_size, "eval_joints": list(EVAL_JOINTS_3DHP)}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        train, _ = mpi3dhp_sequences(h.root, h.train_sequences, h.fps, h.margin)
        self.train_set = CropClips(train, h.image_size, h.clip_len, h.clip_stride)
        test, valid = mpi3dhp_sequences(h.root, h.test_sequences, None, h.margin)
        self.val_set = self.test_set = CropFrames(test, h.image_size, h.eval_stride, frames=valid)


class LabelledCropsDataModule(_PoolDataModule):
    """Labelled source crops from one ``.npz`` (layout above), e.g. SURREAL converted by the user:
    a seeded ``val_fraction`` of the crops is held out as the (in-domain) val/test set."""

    def __init__(self, path: str, val_fraction: float = 0.05, batch_size: int = 64, eval_batch_size: int = 64,
                 seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, eval_batch_size, num_workers, seed, None)
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.save_hyperparameters(logger=False)  # the run logs the whole resolved config

    @property
    def dims(self) -> dict:
        self.setup()
        return {"image_size": int(self.train_set.images.shape[1])}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        crops = load_crops_file(h.path)
        order = np.random.default_rng(h.seed).permutation(len(crops["images"]))
        n_val = max(1, int(round(h.val_fraction * len(order))))
        split = {"val": np.sort(order[:n_val]), "train": np.sort(order[n_val:])}
        part = {k: {f: a[i] for f, a in crops.items()} for k, i in split.items()}
        self.train_set = FrameDataset(part["train"])
        self.val_set = self.test_set = FrameDataset(part["val"])
