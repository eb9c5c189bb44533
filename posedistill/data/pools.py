"""The four seeded synthetic pools, kept in the runner's cache keyed by their parameters.

- ``sequences``: unpaired 3D pose clips (mix B), never rendered.
- ``source``: labelled single frames (mix A), source style (grey, C=1).
- ``target``: unlabelled target clips (mix B), target style (RGB).
- ``target_val`` / ``target_test``: labelled target clips with their own seeds (new subjects).

The rendered pools take the effective style (``renderer.resolve_style``: a named style with per-field
overrides); every field of it is part of the cache key, so a changed domain gap never reuses old images.

Every pool draws from ``SeedSequence([seed, pool id])`` so pools never share random streams.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from posedistill.data.motion import generate_clips
from posedistill.data.renderer import Style, get_style, render_clips, style_params

POOL_IDS = {"sequences": 1, "sequences_val": 2, "source": 3, "target": 4, "target_val": 5, "target_test": 6}
_VERSION = 2  # 2: pixel noise drawn per render chunk
_RENDER_CHUNK = 16  # clips rendered at once


def _rng(pool: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), POOL_IDS[pool]]))


class ArrayCache(Protocol):
    """Where built pools are kept between runs (the runner's ``DiskCache``): ``arrays`` returns the
    entry ``name`` built from ``key``, or calls ``build`` and stores what it returns."""

    def arrays(self, name: str, key: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]: ...


def _cached(pool: str, params: dict, build, cache: ArrayCache | None) -> dict[str, np.ndarray]:
    """The entry ``posedistill/<pool>`` of ``cache`` keyed by the pool's parameters, or ``build()``
    without a cache."""
    if cache is None:
        return build()
    return cache.arrays(f"posedistill/{pool}", {"pool": pool, "v": _VERSION, **params}, build)


def sequence_pool(n_clips: int, clip_len: int = 60, seed: int = 0, split: str = "train", mix: str = "B",
                  elevation: tuple[float, float] = (0.0, 35.0), cache: ArrayCache | None = None) -> dict[str, np.ndarray]:
    """Unpaired pose clips: poses (n, T, 17, 3) float32 mm, action (n,)."""
    pool = "sequences" if split == "train" else "sequences_val"
    params = dict(n_clips=n_clips, clip_len=clip_len, seed=seed, mix=mix, elevation=list(elevation))

    def build():
        c = generate_clips(n_clips, clip_len, _rng(pool, seed), mix=mix, elevation=tuple(elevation))
        return {"poses": c.poses, "action": c.action}

    return _cached(pool, params, build, cache)


def _rendered_clips(pool: str, n_clips: int, clip_len: int, seed: int, mix: str, style: str | Style) -> dict[str, np.ndarray]:
    st = get_style(style)
    rng = _rng(pool, seed)
    clips = generate_clips(n_clips, clip_len, rng, mix=mix, elevation=st.elevation)
    images = np.concatenate([render_clips(clips.poses[i : i + _RENDER_CHUNK], st, rng, threads=2)
                             for i in range(0, n_clips, _RENDER_CHUNK)])
    return {"images": images, "poses": clips.poses, "action": clips.action}


def source_pool(n_frames: int, seed: int = 0, mix: str = "A", frames_per_clip: int = 10,
                cache: ArrayCache | None = None, style: str | Style = "source") -> dict[str, np.ndarray]:
    """Labelled source frames: images (n, 64, 64, C) uint8 (C=1 in the source style), poses (n, 17, 3),
    action (n,). Frames are taken ``frames_per_clip`` at random from 60-frame clips."""
    st = get_style(style)
    params = dict(n_frames=n_frames, seed=seed, mix=mix, frames_per_clip=frames_per_clip, style=style_params(st))

    def build():
        rng = _rng("source", seed)
        n_clips = -(-n_frames // frames_per_clip)
        clips = generate_clips(n_clips, 60, rng, mix=mix, elevation=st.elevation)
        pick = np.stack([rng.choice(60, frames_per_clip, replace=False) for _ in range(n_clips)])
        poses = np.take_along_axis(clips.poses, pick[..., None, None], 1).reshape(-1, 17, 3)[:n_frames]
        action = np.repeat(clips.action, frames_per_clip)[:n_frames]
        images = np.concatenate([render_clips(poses[i : i + 512, None], st, rng, threads=2)[:, 0]
                                 for i in range(0, n_frames, 512)])
        return {"images": images, "poses": poses, "action": action}

    return _cached("source", params, build, cache)


def target_pool(n_clips: int, clip_len: int = 60, seed: int = 0, split: str = "train", mix: str = "B",
                cache: ArrayCache | None = None, style: str | Style = "target") -> dict[str, np.ndarray]:
    """Target-style clips: images (n, T, 64, 64, 3) uint8, poses (n, T, 17, 3), action (n,).
    ``split``: ``train`` (unlabelled use), ``val`` or ``test`` (labelled, own seeds); ``style``: the
    effective target style (its elevation range is the clips' camera elevation)."""
    st = get_style(style)
    pool = {"train": "target", "val": "target_val", "test": "target_test"}.get(split)
    if pool is None:
        raise ValueError(f"target_pool: split must be train, val or test, got {split!r}")
    params = dict(n_clips=n_clips, clip_len=clip_len, seed=seed, mix=mix, style=style_params(st))
    return _cached(pool, params, lambda: _rendered_clips(pool, n_clips, clip_len, seed, mix, st), cache)
