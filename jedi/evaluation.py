"""Held-out evaluation shared by JEDI and its baselines: R^2 metrics per test split and the embeddings
inferred for the held-out trials (read by the probes and generalisation analyses)."""
from __future__ import annotations

from typing import NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from jedi_rnn.data.trials import TrialBatch
from jedi_rnn.metrics.r2 import MeanNeuronR2, VarianceWeightedR2

# test dataloaders in order: held-out trials of seen conditions, then trials of held-out conditions
TEST_SPLITS = ("test", "heldout_cond")


class InferredEmbeddings(NamedTuple):
    """Embeddings inferred for one evaluation split, with the trials' labels and the split's R^2."""

    embeddings: Tensor
    conditions: Tensor
    r2: float


def _suffix(split: str) -> str:
    return "" if split == "test" else "_" + split


class HeldOutEvaluation(pl.LightningModule):
    """Validation/test R^2 metrics and per-split inferred embeddings; subclasses call
    ``init_evaluation(n_neurons)`` in their constructor and ``record_test`` from ``test_step``."""

    def init_evaluation(self, n_neurons: int) -> None:
        self.val_metrics = nn.ModuleDict({"r2": VarianceWeightedR2(n_neurons), "r2_neuron_mean": MeanNeuronR2(n_neurons)})
        self.test_metrics = nn.ModuleDict({
            f"{name}{_suffix(split)}": cls(n_neurons)
            for split in TEST_SPLITS for name, cls in (("r2", VarianceWeightedR2), ("r2_neuron_mean", MeanNeuronR2))})
        self.inferred: dict[str, InferredEmbeddings] = {}
        self._inferred_parts: dict[str, list] = {}

    def on_test_epoch_start(self) -> None:
        self._inferred_parts = {s: [] for s in TEST_SPLITS}

    def record_test(self, dataloader_idx: int, batch: TrialBatch, c: Tensor, pred: Tensor, target: Tensor) -> None:
        """Update and log the split's test metrics and keep the batch's embeddings."""
        split = TEST_SPLITS[dataloader_idx]
        self._inferred_parts[split].append((c.cpu(), batch.condition.cpu()))
        for name in ("r2", "r2_neuron_mean"):
            metric = self.test_metrics[name + _suffix(split)]
            metric.update(pred, target)
            self.log(f"test/{name}{_suffix(split)}", metric, batch_size=len(batch.index), add_dataloader_idx=False)

    def on_test_epoch_end(self) -> None:
        for split, parts in self._inferred_parts.items():
            if parts:
                self.inferred[split] = InferredEmbeddings(
                    torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                    float(self.test_metrics["r2" + _suffix(split)].compute()))
