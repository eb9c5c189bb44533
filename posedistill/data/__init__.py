"""PoseDistill data: synthetic motion, renderer, pools, datamodules and real-data loaders."""
from posedistill.data.datamodules import (
    ClipBatch,
    H36MSequenceDataModule,
    ImageBatch,
    PoseBatch,
    PoseSequenceDataModule,
    SourceImageDataModule,
    TargetClipDataModule,
)

__all__ = ["ClipBatch", "H36MSequenceDataModule", "ImageBatch", "PoseBatch", "PoseSequenceDataModule", "SourceImageDataModule",
           "TargetClipDataModule"]
