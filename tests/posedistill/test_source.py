"""Stage D: flip augmentation against the spec's flip map, and supervised training of G^s only."""
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from posedistill.stages.source import SourceStage
from tests.posedistill.conftest import TINY_ENCODER, image_batch

# spec §4: swap [2,3,4,9,10,11,12] <-> [5,6,7,13,14,15,16] and negate x
RIGHT, LEFT = [2, 3, 4, 9, 10, 11, 12], [5, 6, 7, 13, 14, 15, 16]


def _manual_flip(pose: torch.Tensor) -> torch.Tensor:
    out = pose.clone()
    out[..., RIGHT, :], out[..., LEFT, :] = pose[..., LEFT, :], pose[..., RIGHT, :]
    out[..., 0] = -out[..., 0]
    return out


def test_flip_augmentation_is_image_flip_plus_pose_flip(upstream):
    batch = image_batch()
    always = SourceStage({"prior": upstream["prior"]}, encoder=TINY_ENCODER, flip_p=1.0, jitter_p=0.0)
    images, poses = always.augment(batch.images, batch.poses)
    assert torch.equal(images, batch.images.flip(-1))
    torch.testing.assert_close(poses, _manual_flip(batch.poses))
    never = SourceStage({"prior": upstream["prior"]}, encoder=TINY_ENCODER, flip_p=0.0, jitter_p=0.0)
    images, poses = never.augment(batch.images, batch.poses)
    assert torch.equal(images, batch.images) and torch.equal(poses, batch.poses)


class _Repeat(Dataset):
    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return type(self.batch)(*(x[i % len(self.batch.images)] for x in self.batch))


def test_training_fits_g_through_the_frozen_decoder(upstream):
    model = SourceStage({"prior": upstream["prior"]}, encoder=TINY_ENCODER, lr=3e-3, flip_p=0.0, jitter_p=0.0)
    batch = image_batch(6)
    # targets the frozen decoder can reach: decoded poses of fixed latent codes
    with torch.no_grad():
        z = 0.8 * (2 * torch.rand(6, 32, generator=torch.Generator().manual_seed(3)) - 1)
        batch = batch._replace(poses=upstream["prior"].decode(z))
        start = (model.predict_pose(batch.images) - batch.poses).abs().mean()
    prior0 = {k: v.clone() for k, v in upstream["prior"].state_dict().items()}
    trainer = pl.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=DataLoader(_Repeat(batch, 6), batch_size=6))
    with torch.no_grad():
        end = (model.predict_pose(batch.images) - batch.poses).abs().mean()
    assert end < 0.5 * start
    assert all(torch.equal(v, prior0[k]) for k, v in upstream["prior"].state_dict().items())
