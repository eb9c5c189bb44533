"""Where the synthetic domain gap comes from: a model's errors with the pose distribution and the
image style changed one at a time (spec §13(c) sanity check: source-only error on target ≫ on source).

Four fresh sets of ``n_clips`` clips are rendered with their own seed: source poses (the source mix, A by default; source
elevations) or target poses (mix B, target elevations), each in the source or the target style.
"source poses / source style" is the in-domain test, "target poses / target style" the target domain.
The styles are the datamodule's effective ones (``datamodule.styles()``: named styles with the data
config's per-field overrides), the same the pools render; without one, the named styles.
Writes ``domain_gap.md`` and ``domain_gap.csv``; returns ``domain_gap/<poses>_poses_<style>_style_{mpjpe,pa_mpjpe}``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from posedistill import metrics as pose_metrics
from posedistill.data.datamodules import _image_tensor
from posedistill.data.motion import generate_clips
from posedistill.data.renderer import get_style, render_clips, style_params

POSES = {"source": "A", "target": "B"}  # pose mix per domain (spec §13(b)); elevations from the style


def measure(module, n_clips: int = 40, frames_per_clip: int = 10, seed: int = 12345,
            batch_size: int = 256, styles: dict | None = None, mixes: dict | None = None) -> dict[str, float]:
    """MPJPE and PA-MPJPE (mm) of ``module.predict_pose`` on the four pose × style combinations;
    ``styles``: {"source": Style, "target": Style} (default: the named styles); ``mixes``: each domain's
    action mix (default ``POSES``)."""
    styles = {d: get_style((styles or {}).get(d, d)) for d in POSES}
    rng = np.random.default_rng(seed)
    out = {}
    for poses_from, mix in {**POSES, **(mixes or {})}.items():
        clips = generate_clips(n_clips, frames_per_clip, rng, mix=mix, elevation=styles[poses_from].elevation)
        poses = torch.from_numpy(clips.poses.reshape(-1, 17, 3))
        for style in ("source", "target"):
            images = render_clips(clips.poses, styles[style], rng)
            images = images.reshape(-1, *images.shape[2:])  # (n, T, H, W, C) → (n·T, H, W, C)
            mpjpe, pa = pose_metrics.MPJPE(), pose_metrics.PAMPJPE()
            with torch.no_grad():
                for i in range(0, len(poses), batch_size):
                    pred = module.predict_pose(_image_tensor(images[i : i + batch_size]).to(getattr(module, "device", "cpu")))
                    mpjpe.update(pred.cpu(), poses[i : i + batch_size])
                    pa.update(pred.cpu(), poses[i : i + batch_size])
            key = f"domain_gap/{poses_from}_poses_{style}_style"
            out[f"{key}_mpjpe"], out[f"{key}_pa_mpjpe"] = float(mpjpe.compute()), float(pa.compute())
    return out


def analyze_domain_gap(module, datamodule, out_dir, n_clips: int = 40, frames_per_clip: int = 10,
                       seed: int = 12345) -> dict[str, float]:
    """Framework analysis entry: measure, then write the table to ``out_dir``."""
    was_training = module.training
    module.eval()
    styles = datamodule.styles() if hasattr(datamodule, "styles") else {d: get_style(d) for d in POSES}
    mixes = datamodule.mixes() if hasattr(datamodule, "mixes") else dict(POSES)
    numbers = measure(module, n_clips, frames_per_clip, seed, styles=styles, mixes=mixes)
    module.train(was_training)
    out_dir = Path(out_dir)
    rows = [(p, s, numbers[f"domain_gap/{p}_poses_{s}_style_mpjpe"], numbers[f"domain_gap/{p}_poses_{s}_style_pa_mpjpe"])
            for p in POSES for s in ("source", "target")]
    lines = ["| poses | style | MPJPE (mm) | PA-MPJPE (mm) |", "|---|---|---|---|"]
    lines += [f"| {p} | {s} | {m:.1f} | {a:.1f} |" for p, s, m, a in rows]
    lines += ["", f"{n_clips} clips × {frames_per_clip} frames per row, rendered with seed {seed}; source poses = mix "
              f"{mixes['source']} at source elevations, target poses = mix {mixes['target']} at target elevations."]
    lines += [f"- {d} style: {style_params(st)}" for d, st in styles.items()]
    (out_dir / "domain_gap.md").write_text("\n".join(lines) + "\n")
    (out_dir / "domain_gap.csv").write_text("poses,style,mpjpe,pa_mpjpe\n" + "".join(f"{p},{s},{m:.2f},{a:.2f}\n" for p, s, m, a in rows))
    return numbers
