"""The one learning-rate schedule (experiments.glue.schedules.CosineDecayLR): every parameter group's
rate per step against the closed form, the same numbers as the per-epoch cosine it replaced, and a
real JEDI run and pose-prior stage following it."""
from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from experiments.glue.build import build_datamodule, build_model
from experiments.glue.cache import DiskCache
from experiments.glue.schedules import CosineDecayLR
from posedistill.data import PoseSequenceDataModule
from posedistill.stages.prior import PosePriorStage
from tests.experiments.test_train import TINY_JEDI


def closed_form(lr0: float, step: int, total: int, floor: float) -> float:
    return lr0 * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def _groups(rates):
    return torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": r} for r in rates])


def test_every_group_decays_to_its_own_floor_by_the_closed_form():
    rates, total = [1e-3, 3e-2, 1e-2], 8
    opt = _groups(rates)
    sched = CosineDecayLR(opt, total_steps=total, final_fraction=0.05)
    for step in range(total + 4):  # constant at the floor after the last step
        for group, lr0 in zip(opt.param_groups, rates):
            assert group["lr"] == pytest.approx(closed_form(lr0, step, total, 0.05), rel=1e-12, abs=0)
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05 * r for r in rates], rel=1e-12)


def test_the_same_rates_as_the_lambda_cosine_it_replaced():
    total, floor = 13, 0.05

    def old_factor(epoch: int) -> float:  # JediModule's LambdaLR factor before the schedule was shared
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(epoch, total) / total))

    new_opt, old_opt = _groups([1e-3, 3e-2]), _groups([1e-3, 3e-2])
    new, old = CosineDecayLR(new_opt, total, floor), torch.optim.lr_scheduler.LambdaLR(old_opt, old_factor)
    for _ in range(total + 2):
        assert [g["lr"] for g in new_opt.param_groups] == [g["lr"] for g in old_opt.param_groups]  # bit for bit
        new_opt.step(), old_opt.step(), new.step(), old.step()


def test_final_fraction_outside_0_1_is_rejected():
    with pytest.raises(ValueError, match=r"scheduler.final_fraction must be a number in \[0, 1\], got 1.5"):
        CosineDecayLR(_groups([1e-3]), total_steps=5, final_fraction=1.5)


class _EpochRates(pl.Callback):
    """Every optimiser group's rate at the start of each training epoch."""

    def __init__(self):
        self.rates: list[list[float]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.rates.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def test_jedi_groups_follow_the_schedule_per_epoch(compose_cfg):
    epochs = 3
    cfg = compose_cfg([*TINY_JEDI, "model.infer.val_steps=1"])  # the experiment sets the cosine
    assert cfg.model.scheduler._target_ == "experiments.glue.schedules.CosineDecayLR"
    dm = build_datamodule(cfg.data, {})
    model = build_model(cfg.model, cfg.get("loss"), dm, {})
    rates = _EpochRates()
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[rates], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    starts = [cfg.model.lr, cfg.model.shared_lr, cfg.model.embedding_lr]  # network, shared factors, table
    floor = cfg.model.scheduler.final_fraction
    expected = [[closed_form(lr0, e, epochs, floor) for lr0 in starts] for e in range(epochs)]
    assert rates.rates == [pytest.approx(row, rel=1e-12) for row in expected]


class _BatchRates(pl.Callback):
    def __init__(self):
        self.rates: list[tuple[int, list[float]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # the step the batch started at: both optimisers stepped once since
        self.rates.append((trainer.global_step - 2, [opt.param_groups[0]["lr"] for opt in trainer.optimizers]))


def test_pose_prior_follows_the_schedule_per_optimiser_step(tmp_path):
    dm = PoseSequenceDataModule(n_clips=8, val_clips=2, batch_size=32, cache=DiskCache(tmp_path))
    torch.manual_seed(0)
    prior = PosePriorStage(hidden=(16, 16), disc_hidden=(8,), lr=1e-3, lr_disc=4e-3, warmup_steps=2,
                           scheduler=partial(CosineDecayLR, final_fraction=0.1))
    rates = _BatchRates()
    steps = 12  # 6 batches, 2 optimiser steps each
    pl.Trainer(max_steps=steps, callbacks=[rates], logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
               accelerator="cpu").fit(prior, dm)
    assert [s for s, _ in rates.rates] == list(range(0, steps, 2))
    for step, (ae, disc) in rates.rates:
        assert ae == pytest.approx(closed_form(1e-3, step, steps, 0.1), rel=1e-12)
        assert disc == pytest.approx(closed_form(4e-3, step, steps, 0.1), rel=1e-12)
