"""Frames/s of the PoseDistill 64×64 renderer (source and target styles, 1 and 2 threads).

Reference measured in the same run: a plain numpy float32 multiply-add over 64×64×19 elements per
frame (the size of one frame's distance field), to normalise across machines.
"""
from __future__ import annotations

import time

import numpy as np

from posedistill.data.motion import generate_clips
from posedistill.data.renderer import draw_scene, render_scene

N_CLIPS, N_FRAMES = 16, 32  # 512 frames per timing


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(repeats: int = 3) -> dict:
    rng = np.random.default_rng(0)
    poses = generate_clips(N_CLIPS, N_FRAMES, rng).poses.reshape(-1, 17, 3)
    n = len(poses)
    out = {"frames": n}
    for style in ("source", "target"):
        scene = draw_scene(N_CLIPS, N_FRAMES, style, np.random.default_rng(1))
        render_scene(poses[:32], scene.take(np.arange(32)))  # warm-up
        for threads in (1, 2):
            sec = _best(lambda: render_scene(poses, scene, threads=threads), repeats)
            out[f"{style}_frames_per_s_{threads}thread"] = round(n / sec, 1)
    a = np.random.default_rng(2).random((n, 19, 64, 64), dtype=np.float32)
    out["reference_fma_frames_per_s"] = round(n / _best(lambda: a * 1.5 + 0.5, repeats), 1)
    out["target_frames_per_s_goal"] = 5000
    return out


if __name__ == "__main__":
    print(run())
