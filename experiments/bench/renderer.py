"""Frames/s of the PoseDistill 64×64 renderer as the pools call it (``render_clips``: scene drawing,
rendering, blur, occluders, pixel noise, uint8), source and target styles, 1 and 2 threads.

Each value is the median of ``repeats`` timed calls on 512 frames (16 clips × 32). Reference measured in
the same run: a plain numpy float32 multiply-add over 64×64×19 elements per frame (the size of one
frame's distance field), to normalise across machines. Target: ≥ 5,000 frames/s on 2 cores.
"""
from __future__ import annotations

import numpy as np

from experiments.bench.timing import median_time
from posedistill.data.motion import generate_clips
from posedistill.data.renderer import render_clips

N_CLIPS, N_FRAMES = 16, 32  # 512 frames per timing


def run(repeats: int = 7) -> dict:
    poses = generate_clips(N_CLIPS, N_FRAMES, np.random.default_rng(0)).poses  # (16, 32, 17, 3)
    n = N_CLIPS * N_FRAMES
    out = {"frames": n, "repeats": repeats}
    for style in ("source", "target"):
        for threads in (1, 2):
            sec = median_time(lambda: render_clips(poses, style, np.random.default_rng(1), threads=threads), repeats)
            out[f"{style}_frames_per_s_{threads}thread"] = round(n / sec, 1)
    a = np.random.default_rng(2).random((n, 19, 64, 64), dtype=np.float32)
    out["reference_fma_frames_per_s"] = round(n / median_time(lambda: a * 1.5 + 0.5, repeats), 1)
    out["target_frames_per_s_goal"] = 5000
    return out


if __name__ == "__main__":
    print(run())
