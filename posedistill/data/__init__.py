"""PoseDistill data: synthetic motion, renderer, pools, datamodules and real-data loaders."""
from posedistill.data.datamodules import (
    ClipBatch,
    H36MSequenceDataModule,
    ImageBatch,
    PairedClipDataModule,
    PoseBatch,
    PoseSequenceDataModule,
    SourceImageDataModule,
    TargetClipDataModule,
    split_paired,
)
from posedistill.data.crops import H36MCropDataModule, LabelledCropsDataModule, MPI3DHPCropDataModule

__all__ = ["ClipBatch", "H36MCropDataModule", "H36MSequenceDataModule", "ImageBatch", "LabelledCropsDataModule",
           "MPI3DHPCropDataModule", "PairedClipDataModule", "PoseBatch", "PoseSequenceDataModule", "SourceImageDataModule", "TargetClipDataModule",
           "split_paired"]
