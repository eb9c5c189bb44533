"""PoseDistill adaptation step (stage E): 8 target clips of 60 raw frames (30-frame clips plus
their positives), 64×64 RGB, all five energies (LCR, HCR, pose-flip, flip-backward,
slow-backward), each a forward + backward + Adam step on its own optimiser, as in training.

The upstream stages (pose prior, motion AE, relation transformers, G^s) are built at their
default (synthetic-benchmark) sizes with untrained weights; timing does not depend on training.
Reported: the median over ``repeats`` of each energy's step, ``round_s`` (one round robin: all
five energies once) and ``mean_step_s`` (round_s / 5, one training batch). Reference, same run:
the same round with the whole of G trainable instead of block3 only.
Target: ``round_s <= 1.5`` on 2 CPU cores.
"""
from __future__ import annotations

import torch

from experiments.bench.timing import median_time
from posedistill.stages.adapt import ENERGIES, AdaptStage
from posedistill.stages.motion import MotionStage
from posedistill.stages.prior import PosePriorStage
from posedistill.stages.relations import RelationStage
from posedistill.stages.source import SourceStage

N_CLIPS, RAW_FRAMES, SIZE = 8, 60, 64


def build_adapt(trainable) -> AdaptStage:
    torch.manual_seed(0)
    prior = PosePriorStage()
    motion = MotionStage(upstream={"prior": prior})
    relations = RelationStage(upstream={"prior": prior, "motion": motion})
    source = SourceStage(upstream={"prior": prior})
    return AdaptStage(upstream={"prior": prior, "motion": motion, "relations": relations, "source": source},
                      trainable=trainable)


def energy_step(model: AdaptStage, name: str, opt: torch.optim.Optimizer, raw: torch.Tensor):
    def step():
        opt.zero_grad(set_to_none=True)
        model.energy(name, raw).backward()
        opt.step()
    return step


def time_round(trainable, raw: torch.Tensor, repeats: int) -> dict[str, float]:
    model = build_adapt(trainable).train()
    return {e: median_time(energy_step(model, e, torch.optim.Adam(model.energy_params(e), lr=1e-5), raw), repeats)
            for e in ENERGIES}


def run(repeats: int = 3) -> dict:
    raw = torch.rand(N_CLIPS, RAW_FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    ours = time_round(["block3"], raw, repeats)
    ref = time_round("all", raw, repeats)
    round_s = sum(ours.values())
    return {"name": "posedistill_adapt_step", "torch_threads": torch.get_num_threads(),
            **{f"{e}_s": round(t, 4) for e, t in ours.items()},
            "round_s": round(round_s, 4), "mean_step_s": round(round_s / len(ENERGIES), 4),
            "all_trainable_round_s": round(sum(ref.values()), 4),
            "target": "round_s <= 1.5 (2 CPU cores)"}


if __name__ == "__main__":
    print(run())
