"""Non-localness of candidate relations (spec §6, §14.9): d_r = mean ‖z − z⁺‖ over held-out
unpaired data, the ranking, and the automated selection rule: greedily keep the top-k (1 pose,
2 motion) by d, skipping a candidate whose latent displacement T_r(z) − z has mean cosine
similarity > ``cos_threshold`` with one already kept. Writes a figure (PNG) and a table
(Markdown + CSV) into ``out_dir``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _stats(z: torch.Tensor, zp: torch.Tensor, disp: torch.Tensor) -> dict:
    d = (z - zp).norm(dim=-1).mean().item()
    spread = (z - z.roll(1, 0)).norm(dim=-1).mean().item()  # typical distance between unrelated samples
    return {"d": d, "d_rel": d / max(spread, 1e-12), "disp": disp}


def select(stats: dict[str, dict], top_k: int, cos_threshold: float) -> dict[str, dict]:
    """Rank by d (descending) and greedily select; adds rank, selected, max_cos to each entry."""
    kept: list[str] = []
    for rank, name in enumerate(sorted(stats, key=lambda r: -stats[r]["d"]), start=1):
        s = stats[name]
        cos = [F.cosine_similarity(s["disp"], stats[k]["disp"], dim=-1).mean().item() for k in kept]
        s["rank"], s["max_cos"] = rank, max(cos, default=float("nan"))
        s["selected"] = len(kept) < top_k and all(c <= cos_threshold for c in cos)
        if s["selected"]:
            kept.append(name)
    return stats


@torch.no_grad()
def measure(module, clips: torch.Tensor, frames_per_clip: int = 8) -> dict[str, dict[str, dict]]:
    """d statistics of every candidate of a RelationStage-like module on raw clips (N, 2L, 17, 3)."""
    clips = clips.to(module.device)
    step = max(1, clips.shape[1] // frames_per_clip)
    poses = clips[:, ::step].flatten(0, 1)
    out: dict[str, dict[str, dict]] = {"pose": {}, "motion": {}}
    for r in module.pose_names:
        z, zp = module.pose_pairs(poses, r)
        out["pose"][r] = _stats(z, zp, module.pose_relation(r)(z) - z)
    for r in module.motion_names:
        v, vp = module.motion_pairs(clips, r)
        out["motion"][r] = _stats(v, vp, module.motion_relation(r)(v) - v)
    return out


def _figure(results: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, fam in zip(axes, ("pose", "motion")):
        names = sorted(results[fam], key=lambda r: -results[fam][r]["d"])
        vals = [results[fam][r]["d"] for r in names]
        colors = ["tab:blue" if results[fam][r]["selected"] else "tab:gray" for r in names]
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel(f"d^{'z' if fam == 'pose' else 'v'} (mean latent distance)")
        ax.set_title(f"{fam} relations (blue = selected)")
        for i, r in enumerate(names):
            ax.text(i, vals[i], f"{results[fam][r]['d_rel']:.2f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle("bar labels: d relative to the mean distance between unrelated samples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(results: dict, out_dir: Path) -> None:
    rows = [(fam, r, s["d"], s["d_rel"], s["rank"], s["selected"], s["max_cos"])
            for fam in ("pose", "motion") for r, s in sorted(results[fam].items(), key=lambda kv: kv[1]["rank"])]
    header = ("family", "relation", "d", "d_rel", "rank", "selected", "max_cos_with_kept")
    with open(out_dir / "nonlocalness.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {a} | {b} | {c:.4f} | {d:.4f} | {e} | {'yes' if s else 'no'} | {m:.3f} |" for a, b, c, d, e, s, m in rows]
    (out_dir / "nonlocalness.md").write_text("\n".join(lines) + "\n")


def analyze_nonlocalness(module, datamodule, out_dir, top_k_pose: int = 1, top_k_motion: int = 2,
                         cos_threshold: float = 0.8, max_clips: int = 256, frames_per_clip: int = 8) -> dict[str, float]:
    """Framework analysis callable: d, d_rel, rank and selection of every candidate relation."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = datamodule.heldout_clips()[:max_clips]
    results = measure(module, clips, frames_per_clip)
    select(results["pose"], top_k_pose, cos_threshold)
    select(results["motion"], top_k_motion, cos_threshold)
    _figure(results, out_dir / "nonlocalness.png")
    _table(results, out_dir)
    metrics: dict[str, float] = {}
    for fam, stats in results.items():
        for r, s in stats.items():
            metrics.update({f"d_{fam}_{r}": s["d"], f"drel_{fam}_{r}": s["d_rel"], f"rank_{fam}_{r}": float(s["rank"]),
                            f"selected_{fam}_{r}": float(s["selected"])})
    pose, mot = results["pose"], results["motion"]
    if "flip" in pose and "rot5" in pose:
        metrics["flip_over_rot5"] = pose["flip"]["d"] / max(pose["rot5"]["d"], 1e-12)
    if all(k in mot for k in ("flip_backward", "slow_backward", "backward", "slow")):
        low = max(mot["backward"]["d"], mot["slow"]["d"])
        metrics["paper_motion_order"] = float(min(mot["flip_backward"]["d"], mot["slow_backward"]["d"]) > low)
    return metrics
