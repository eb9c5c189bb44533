"""LightningDataModules over the synthetic pools.

Batches are NamedTuples (default_collate keeps the type):
``PoseBatch(poses (B, 17, 3) or (B, T, 17, 3), action (B,))``,
``ImageBatch(images (B, 3, 64, 64) float in [0, 1], poses (B, 17, 3), action (B,))``,
``ClipBatch(images (B, T, 3, 64, 64), poses (B, T, 17, 3), action (B,))``; clip poses are ground
truth, for val/test/oracle use only. Grey source images are replicated to 3 channels.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from posedistill.data.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, h36m_clips
from posedistill.data.motion import MIXES
from posedistill.data.pools import ArrayCache, sequence_pool, source_pool, target_pool
from posedistill.data.renderer import Style, resolve_style


class PoseBatch(NamedTuple):
    poses: torch.Tensor
    action: torch.Tensor


class ImageBatch(NamedTuple):
    images: torch.Tensor
    poses: torch.Tensor
    action: torch.Tensor


class ClipBatch(NamedTuple):
    images: torch.Tensor
    poses: torch.Tensor
    action: torch.Tensor


def _image_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, C) → float (..., 3, H, W) in [0, 1] (C=1 replicated)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).movedim(-1, -3).float().div_(255.0)
    return t.expand(*t.shape[:-3], 3, *t.shape[-2:]) if t.shape[-3] == 1 else t


class PoseDataset(Dataset):
    """Single poses from clips (``item='pose'``: every frame) or whole clips (``item='clip'``)."""

    def __init__(self, poses: np.ndarray, action: np.ndarray, item: str):
        if item not in ("pose", "clip"):
            raise ValueError(f"PoseDataset: item must be 'pose' or 'clip', got {item!r}")
        self.poses = torch.from_numpy(poses)
        self.action = torch.from_numpy(action)
        self.item = item
        self.t = poses.shape[1]

    def __len__(self) -> int:
        return len(self.poses) * (self.t if self.item == "pose" else 1)

    def __getitem__(self, i: int) -> PoseBatch:
        if self.item == "pose":
            return PoseBatch(self.poses[i // self.t, i % self.t], self.action[i // self.t])
        return PoseBatch(self.poses[i], self.action[i])


class FrameDataset(Dataset):
    """Labelled frames from images (n, H, W, C) or clips flattened (n, T, H, W, C)."""

    def __init__(self, pool: dict[str, np.ndarray]):
        imgs, poses, action = pool["images"], pool["poses"], pool["action"]
        if imgs.ndim == 5:  # clips → frames
            t = imgs.shape[1]
            imgs, poses, action = imgs.reshape(-1, *imgs.shape[2:]), poses.reshape(-1, 17, 3), np.repeat(action, t)
        self.images, self.poses, self.action = imgs, torch.from_numpy(poses), torch.from_numpy(action)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> ImageBatch:
        return ImageBatch(_image_tensor(self.images[i]), self.poses[i], self.action[i])


class ClipDataset(Dataset):
    """Target clips: images (n, T, H, W, C) uint8 with their ground-truth poses."""

    def __init__(self, pool: dict[str, np.ndarray]):
        self.images, self.poses, self.action = pool["images"], torch.from_numpy(pool["poses"]), torch.from_numpy(pool["action"])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> ClipBatch:
        return ClipBatch(_image_tensor(self.images[i]), self.poses[i], self.action[i])


def plain_overrides(overrides) -> dict:
    """Style overrides as plain types (checkpoints load weights_only; cache keys are JSON); the
    datamodules validate them with ``styles()`` right after."""
    if not overrides:
        return {}
    if hasattr(overrides, "items") and not isinstance(overrides, dict):  # DictConfig
        from omegaconf import OmegaConf

        overrides = OmegaConf.to_container(overrides, resolve=True)
    return {str(k): (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(overrides).items()}


class _StyledDataModule:
    """The effective source and target render styles of a synthetic datamodule (named style + overrides)
    and the action mix of each domain's poses (``source_mix`` / ``target_mix``, ``motion.MIXES``); every
    consumer (pools, the domain-gap analysis) takes them from here."""

    def styles(self) -> dict[str, Style]:
        h = self.hparams
        return {"source": resolve_style(h.source_style, h.source_style_overrides),
                "target": resolve_style(h.target_style, h.target_style_overrides)}

    def mixes(self) -> dict[str, str]:
        h = self.hparams
        for key in ("source_mix", "target_mix"):
            if h[key] not in MIXES:
                raise ValueError(f"data.{key}: unknown action mix {h[key]!r}; choose from {sorted(MIXES)}")
        return {"source": h.source_mix, "target": h.target_mix}


class _PoolDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int, eval_batch_size: int, num_workers: int, seed: int, cache: ArrayCache | None):
        super().__init__()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed, self.cache = num_workers, seed, cache
        self.train_set = self.val_set = self.test_set = None

    def _loader(self, ds, batch_size: int, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_set, self.batch_size, True)

    def val_dataloader(self):
        return self._loader(self.val_set, self.eval_batch_size, False)

    def test_dataloader(self):
        return self._loader(self.test_set, self.eval_batch_size, False)


class PoseSequenceDataModule(_PoolDataModule):
    """Unpaired 3D pose sequences (stages A–C). ``item='pose'`` yields single frames, ``'clip'``
    whole raw clips (B, clip_len, 17, 3). Val and test use the same held-out clips (own seed)."""

    def __init__(self, n_clips: int = 3000, val_clips: int = 300, clip_len: int = 60, item: str = "pose",
                 batch_size: int = 256, eval_batch_size: int = 512, mix: str = "B",
                 elevation: tuple[float, float] = (0.0, 35.0), seed: int = 0, cache: ArrayCache | None = None,
                 num_workers: int = 0):
        super().__init__(batch_size, eval_batch_size, num_workers, seed, cache)
        elevation = tuple(float(e) for e in elevation)  # plain types: checkpoints load weights_only
        self.save_hyperparameters(logger=False, ignore=["cache"])  # the run logs the whole resolved config
        self.train_pool = self.val_pool = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_pool is not None:
            return
        h = self.hparams
        kw = dict(clip_len=h.clip_len, seed=h.seed, mix=h.mix, elevation=tuple(h.elevation), cache=self.cache)
        self.train_pool = sequence_pool(h.n_clips, split="train", **kw)
        self.val_pool = sequence_pool(h.val_clips, split="val", **kw)
        self.train_set = PoseDataset(self.train_pool["poses"], self.train_pool["action"], h.item)
        self.val_set = self.test_set = PoseDataset(self.val_pool["poses"], self.val_pool["action"], h.item)

    def heldout_clips(self) -> torch.Tensor:
        """Held-out raw clips (n, clip_len, 17, 3) for analyses."""
        self.setup()
        return torch.from_numpy(self.val_pool["poses"])


class SourceImageDataModule(_StyledDataModule, _PoolDataModule):
    """Labelled source frames for training; val/test are frames of the labelled target
    val/test clips (separate seeds; val is for monitoring, test for reporting).
    ``source_style`` / ``target_style``: the renderer's named styles (``renderer.STYLES``), with per-field
    ``*_style_overrides`` (e.g. ``{clutter: false, occluder_p: 0.0}``)."""

    def __init__(self, n_frames: int = 20000, val_clips: int = 40, test_clips: int = 200, clip_len: int = 60,
                 batch_size: int = 128, eval_batch_size: int = 256, seed: int = 0, cache: ArrayCache | None = None,
                 num_workers: int = 0, source_style: str = "source", source_style_overrides: dict | None = None,
                 target_style: str = "target", target_style_overrides: dict | None = None,
                 source_mix: str = "A", target_mix: str = "B"):
        super().__init__(batch_size, eval_batch_size, num_workers, seed, cache)
        source_style_overrides = plain_overrides(source_style_overrides)
        target_style_overrides = plain_overrides(target_style_overrides)
        self.save_hyperparameters(logger=False, ignore=["cache"])  # the run logs the whole resolved config
        self.styles(), self.mixes()  # unknown style names, fields or mixes fail here, before any rendering

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h, st, mix = self.hparams, self.styles(), self.mixes()
        self.train_set = FrameDataset(source_pool(h.n_frames, seed=h.seed, mix=mix["source"], cache=self.cache,
                                                  style=st["source"]))
        kw = dict(cache=self.cache, style=st["target"], mix=mix["target"])
        self.val_set = FrameDataset(target_pool(h.val_clips, h.clip_len, h.seed, "val", **kw))
        self.test_set = FrameDataset(target_pool(h.test_clips, h.clip_len, h.seed, "test", **kw))


class TargetClipDataModule(_StyledDataModule, _PoolDataModule):
    """Unlabelled target clips for adaptation (stage E; poses are present for oracles only);
    val/test are the labelled target val/test clips (same pools as SourceImageDataModule's when the
    target styles agree). ``target_style`` (a named style) with per-field ``target_style_overrides``;
    ``source_style`` / ``source_style_overrides``: the source domain's (used by the domain-gap analysis)."""

    def __init__(self, n_clips: int = 600, val_clips: int = 40, test_clips: int = 200, clip_len: int = 60,
                 batch_size: int = 8, eval_batch_size: int = 8, seed: int = 0, cache: ArrayCache | None = None,
                 num_workers: int = 0, target_style: str = "target", target_style_overrides: dict | None = None,
                 source_style: str = "source", source_style_overrides: dict | None = None,
                 target_mix: str = "B", source_mix: str = "A"):
        super().__init__(batch_size, eval_batch_size, num_workers, seed, cache)
        source_style_overrides = plain_overrides(source_style_overrides)
        target_style_overrides = plain_overrides(target_style_overrides)
        self.save_hyperparameters(logger=False, ignore=["cache"])  # the run logs the whole resolved config
        self.styles(), self.mixes()  # unknown style names, fields or mixes fail here, before any rendering

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        kw = dict(cache=self.cache, style=self.styles()["target"], mix=self.mixes()["target"])
        self.train_set = ClipDataset(target_pool(h.n_clips, h.clip_len, h.seed, "train", **kw))
        self.val_set = ClipDataset(target_pool(h.val_clips, h.clip_len, h.seed, "val", **kw))
        self.test_set = ClipDataset(target_pool(h.test_clips, h.clip_len, h.seed, "test", **kw))


class PairedClipDataModule(TargetClipDataModule):
    """Target clips (as :class:`TargetClipDataModule`, same arguments) whose training batches are paired
    with side pools, for stage E's anchors and the DANN baseline: ``source``, a datamodule of labelled
    source frames (:class:`SourceImageDataModule`), and/or ``unpaired``, one of unpaired 3D poses
    (:class:`PoseSequenceDataModule`). Each training batch is a dict ``{"target": ClipBatch,
    "source": ImageBatch, "unpaired": PoseBatch}`` (only the pools given). An epoch is one pass over the
    target clips (each side loader, shuffled each epoch, is cut to that length), so no trainer limit is
    needed: one would also reach the cached stages A-D and retrain them. Val/test are the labelled
    target clips."""

    def __init__(self, source: pl.LightningDataModule | None = None, unpaired: pl.LightningDataModule | None = None,
                 **target_kwargs):
        super().__init__(**target_kwargs)
        if source is None and unpaired is None:
            raise ValueError("PairedClipDataModule: give data.source and/or data.unpaired "
                             "(else use posedistill.data.TargetClipDataModule)")
        # the side datamodules are not hyper-parameters; the run logs the whole resolved config
        self.save_hyperparameters(ignore=["source", "unpaired", "cache"], logger=False)
        self.sides = {name: dm for name, dm in (("source", source), ("unpaired", unpaired)) if dm is not None}

    def prepare_data(self) -> None:
        for dm in self.sides.values():
            dm.prepare_data()
        super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for dm in self.sides.values():
            dm.setup(stage)
        super().setup(stage)

    def train_dataloader(self):
        loaders = {name: dm.train_dataloader() for name, dm in self.sides.items()}
        return CombinedLoader({"target": super().train_dataloader(), **loaders}, mode="min_size")


def split_paired(batch) -> tuple[ClipBatch, ImageBatch | None, PoseBatch | None]:
    """A stage-E training batch as (target clips, labelled source batch or None, unpaired poses or
    None): a ``ClipBatch``, or a :class:`PairedClipDataModule` dict."""
    if isinstance(batch, ClipBatch):
        return batch, None, None
    return batch["target"], batch.get("source"), batch.get("unpaired")


class H36MSequenceDataModule(PoseSequenceDataModule):
    """Unpaired pose sequences from Human3.6M (VideoPose3D ``data_3d_h36m.npz``) in place of the
    synthetic pool, for stages A–C: train subjects → train, test subjects → val/test."""

    def __init__(self, path: str, train_subjects=TRAIN_SUBJECTS, test_subjects=TEST_SUBJECTS, clip_len: int = 60,
                 stride: int = 30, item: str = "pose", batch_size: int = 256, eval_batch_size: int = 512,
                 seed: int = 0, num_workers: int = 0):
        super(PoseSequenceDataModule, self).__init__(batch_size, eval_batch_size, num_workers, seed, None)
        train_subjects, test_subjects = tuple(train_subjects), tuple(test_subjects)
        self.save_hyperparameters(logger=False)  # the run logs the whole resolved config
        self.train_pool = self.val_pool = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_pool is not None:
            return
        h = self.hparams
        self.train_pool = h36m_clips(h.path, h.train_subjects, h.clip_len, h.stride)
        self.val_pool = h36m_clips(h.path, h.test_subjects, h.clip_len, h.stride)
        self.train_set = PoseDataset(self.train_pool["poses"], self.train_pool["action"], h.item)
        self.val_set = self.test_set = PoseDataset(self.val_pool["poses"], self.val_pool["action"], h.item)
