"""PoseDistill data: synthetic motion, renderer, pools, datamodules and real-data loaders."""
from posedistill.data.datamodules import (
    ClipBatch,
    ImageBatch,
    PoseBatch,
    PoseSequenceDataModule,
    SourceImageDataModule,
    TargetClipDataModule,
)

__all__ = ["ClipBatch", "ImageBatch", "PoseBatch", "PoseSequenceDataModule", "SourceImageDataModule",
           "TargetClipDataModule"]
