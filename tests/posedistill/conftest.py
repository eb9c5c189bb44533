"""Tiny real upstream stages (A prior, B motion, C relations, D source) for the stage D/E tests.

Untrained (random) weights at tiny sizes: the tests check mechanics (which parameters move, the
round robin, closed-form losses), which do not depend on the upstream stages being trained.
"""
from __future__ import annotations

import pytest
import torch

from posedistill.data import ClipBatch, ImageBatch
from posedistill.stages import freeze
from posedistill.stages.motion import MotionStage
from posedistill.stages.prior import PosePriorStage
from posedistill.stages.relations import RelationStage
from posedistill.stages.source import SourceStage

TINY_ENCODER = {"channels": [4, 4, 8, 8, 8], "feat_dim": 16, "image_size": 32}
# overrides that shrink a synthetic PoseDistill experiment (stages A-D included) to a seconds-long run
TINY_SYNTHETIC = [
    "stages.prior.data.n_clips=8", "stages.motion.data.n_clips=8", "stages.relations.data.n_clips=8",
    "stages.prior.data.val_clips=4", "stages.motion.data.val_clips=4", "stages.relations.data.val_clips=4",
    "stages.source.data.n_frames=64", "stages.source.data.val_clips=1", "stages.source.data.test_clips=1",
    "data.n_clips=8", "data.val_clips=1", "data.test_clips=1", "++trainer.enable_checkpointing=true",
    "analysis.domain_gap.n_clips=2", "analysis.domain_gap.frames_per_clip=2",
]


@pytest.fixture
def upstream() -> dict:
    torch.manual_seed(0)
    prior = freeze(PosePriorStage(hidden=(16, 16), disc_hidden=(8,)))
    motion = freeze(MotionStage(upstream={"prior": prior}, hidden=8, layers=1, dim_v=16))
    relations = freeze(RelationStage(upstream={"prior": prior, "motion": motion}, pose_relations=["flip"],
                                     motion_relations=["flip_backward", "slow_backward"], pose_hidden=(16,),
                                     motion_hidden=(16,)))
    source = freeze(SourceStage(upstream={"prior": prior}, encoder=TINY_ENCODER))
    return {"prior": prior, "motion": motion, "relations": relations, "source": source}


def clip_batch(n_clips: int = 3, n_frames: int = 60, size: int = 32, seed: int = 0) -> ClipBatch:
    g = torch.Generator().manual_seed(seed)
    return ClipBatch(torch.rand(n_clips, n_frames, 3, size, size, generator=g),
                     100 * torch.randn(n_clips, n_frames, 17, 3, generator=g), torch.zeros(n_clips, dtype=torch.long))


def image_batch(n: int = 6, size: int = 32, seed: int = 0) -> ImageBatch:
    g = torch.Generator().manual_seed(seed)
    return ImageBatch(torch.rand(n, 3, size, size, generator=g), 100 * torch.randn(n, 17, 3, generator=g),
                      torch.zeros(n, dtype=torch.long))
