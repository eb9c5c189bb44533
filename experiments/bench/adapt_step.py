"""PoseDistill adaptation step (stage E): 8 target clips of 60 raw frames (30-frame clips plus
their positives), 64×64 RGB, all five energies (LCR, HCR, pose-flip, flip-backward,
slow-backward), each a forward + backward + Adam step on its own optimiser, as in training.

The upstream stages (pose prior, motion AE, relation transformers, G^s) are built at their
default (synthetic-benchmark) sizes with untrained weights; timing does not depend on training.

- ``round_s``: one training batch of :class:`AdaptStage` (median over ``repeats``): the frozen
  blocks 1–2 of G once on the batch's frames, then the five energies' steps in turn.
- Reference, same run (``reference_round_s``): the five energies written at the image level
  (:func:`reference_energy`, each encoding its own images through the whole of G, as before the
  shared frozen prefix), the sum of their median steps.
- ``round_synthetic_s``: the same batch with the synthetic experiments' stage E settings
  (``configs/model/posedistill/adapt_synthetic.yaml``: 4 LCR anchor frames per clip, both HCR
  windows, the stronger positive augmentations), which the demo and the ladder run.
- ``round_anchored_s``: the synthetic full method as ``experiment=posedistill/synthetic_adapt`` runs it:
  ``round_synthetic_s``'s batch and settings, the anchors of ``adapt_synthetic.yaml`` (a step of the
  source L1 on ``SOURCE_BATCH`` source images, a step of the pose-distribution distance to
  ``UNPAIRED_BATCH`` unpaired poses) and the experiment's trainable parts (``model.trainable``).
Target: ``round_s``, ``round_synthetic_s`` and ``round_anchored_s <= 1.5`` on 2 CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.bench.timing import median_time
from posedistill.data import ImageBatch, PoseBatch
from posedistill.data.transforms import flip_images
from posedistill.losses.contrastive import info_nce, pose_invariant_augment
from posedistill.losses.relations import flip_backward_clip, relation_energy, slow_backward_pair
from posedistill.stages.adapt import ENERGIES, AdaptStage
from posedistill.stages.motion import MotionStage
from posedistill.stages.prior import PosePriorStage
from posedistill.stages.relations import RelationStage
from posedistill.stages.source import SourceStage

N_CLIPS, RAW_FRAMES, SIZE = 8, 60, 64
SOURCE_BATCH = 128  # configs/data/posedistill/source.yaml batch_size
UNPAIRED_BATCH = 256  # configs/data/posedistill/sequences.yaml batch_size (stage A's pool)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SYNTHETIC_CONFIG = CONFIGS / "model/posedistill/adapt_synthetic.yaml"
SYNTHETIC_EXPERIMENT = CONFIGS / "experiment/posedistill/synthetic_adapt.yaml"
SYNTHETIC_KEYS = ("lcr_frames", "hcr_windows", "augment")


def synthetic_settings(keys: tuple[str, ...] = SYNTHETIC_KEYS) -> dict:
    """The stage E settings ``keys`` of the synthetic experiments' model config (by default those that
    change the cost of a batch)."""
    cfg = OmegaConf.to_container(OmegaConf.load(SYNTHETIC_CONFIG))
    return {k: cfg[k] for k in keys}


def synthetic_full_method() -> dict:
    """The synthetic full method: :func:`synthetic_settings` with its anchors, and its experiment's
    trainable parts."""
    trainable = OmegaConf.load(SYNTHETIC_EXPERIMENT).model.trainable
    return {**synthetic_settings((*SYNTHETIC_KEYS, "anchors")), "trainable": list(trainable)}


def build_adapt(trainable=("block3",), **settings) -> AdaptStage:
    torch.manual_seed(0)
    prior = PosePriorStage()
    motion = MotionStage(upstream={"prior": prior})
    relations = RelationStage(upstream={"prior": prior, "motion": motion})
    source = SourceStage(upstream={"prior": prior})
    return AdaptStage(upstream={"prior": prior, "motion": motion, "relations": relations, "source": source},
                      trainable=trainable, **settings)


def reference_energy(model: AdaptStage, name: str, raw: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Energy ``name`` of raw clips (B, T_raw, C, H, W) straight from the spec's formulas, every
    image through the whole of G; ``gen`` draws the augmented view of the first ``seq_len`` frames."""
    enc, length = model.encoder, model.hparams.seq_len
    clip = raw[:, :length]
    motion = lambda clips: model.motion.encode(enc.encode_frames(clips))  # noqa: E731
    if name in ("lcr", "hcr"):
        view = pose_invariant_augment(clip, gen, **model.augment_kw)
        head, tau, anchor = model.heads[name], model.hparams.temperature, model.hparams.contrastive_anchor
        if name == "lcr":
            return info_nce(head(enc.features(clip[:, 0])[0]), head(enc.features(view[:, 0])[0]), tau, anchor)
        return info_nce(head(motion(clip)), head(motion(view)), tau, anchor)
    if name == "flip":
        frames = clip.flatten(0, 1)  # (B·T, C, H, W)
        return relation_energy(model.relations.pose_relation("flip")(enc(frames)), enc(flip_images(frames)), False)
    anchor, positive = (clip, flip_backward_clip(clip)) if name == "flip_backward" else slow_backward_pair(raw, length)
    with torch.no_grad():
        v_pos = motion(positive)
    return relation_energy(model.relations.motion_relation(name)(motion(anchor)), v_pos, True)


def _step(opt: torch.optim.Optimizer, loss_fn):
    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
    return step


def round_time(model: AdaptStage, raw: torch.Tensor, repeats: int, source: ImageBatch | None = None,
               unpaired: PoseBatch | None = None) -> tuple[float, list]:
    """Median seconds of one AdaptStage training batch on raw clips (and the anchors' source batch and
    unpaired poses); and the energies' optimisers."""
    names = model.energies
    opts = [torch.optim.Adam(model.energy_params(e), lr=1e-5) for e in names]

    def round_():
        pre = model.prefix_features(raw, source=source, unpaired=unpaired)
        for name, opt in zip(names, opts):
            _step(opt, lambda: model.energy(name, pre))()

    return median_time(round_, repeats), opts


def run(repeats: int = 5) -> dict:
    raw = torch.rand(N_CLIPS, RAW_FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    synthetic, _ = round_time(build_adapt(**synthetic_settings()).train(), raw, repeats)
    g = torch.Generator().manual_seed(1)
    source = ImageBatch(torch.rand(SOURCE_BATCH, 3, SIZE, SIZE, generator=g),
                        100 * torch.randn(SOURCE_BATCH, 17, 3, generator=g), torch.zeros(SOURCE_BATCH, dtype=torch.long))
    unpaired = PoseBatch(100 * torch.randn(UNPAIRED_BATCH, 17, 3, generator=g), torch.zeros(UNPAIRED_BATCH, dtype=torch.long))
    anchored, _ = round_time(build_adapt(**synthetic_full_method()).train(), raw, repeats, source, unpaired)
    model = build_adapt().train()
    ours, opts = round_time(model, raw, repeats)
    gen = torch.Generator().manual_seed(0)
    ref = {e: median_time(_step(opt, lambda e=e: reference_energy(model, e, raw, gen)), repeats)
           for e, opt in zip(ENERGIES, opts)}
    ref_round = sum(ref.values())
    return {"name": "posedistill_adapt_step", "torch_threads": torch.get_num_threads(), "repeats": repeats,
            "round_s": round(ours, 4), "mean_step_s": round(ours / len(ENERGIES), 4),
            **{f"reference_{e}_s": round(t, 4) for e, t in ref.items()},
            "reference_round_s": round(ref_round, 4), "speedup": round(ref_round / ours, 2),
            "round_synthetic_s": round(synthetic, 4), "round_anchored_s": round(anchored, 4),
            "target": "round_s, round_synthetic_s and round_anchored_s <= 1.5 (2 CPU cores)"}


if __name__ == "__main__":
    print(run())
