"""Trial-aligned datasets: the in-memory form every JEDI data source produces, and the datamodule
that splits it into train / val / test trials and held-out conditions."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional, Protocol, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


@dataclass
class TrialSet:
    """Trials of population activity with their condition labels.

    ``data`` (n, T, K) float32 with NaN for missing entries; ``conditions`` (n,) int64 indices into
    ``condition_names``; ``condition_values`` (C,) an optional number per condition (e.g. frequency);
    ``extras`` per-trial arrays with leading dim n; ``meta`` dataset-level arrays and scalars.
    """

    data: Tensor
    conditions: Tensor
    condition_names: list[str]
    dt: float
    condition_values: Optional[Tensor] = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.data.shape[0]

    def validate(self, origin: str) -> "TrialSet":
        """Check shapes and values; errors name the origin (file or source) and the array."""
        if self.data.ndim != 3:
            raise ValueError(f"{origin}: array 'data' must be (trials, time, neurons), got shape {tuple(self.data.shape)}")
        if not torch.is_floating_point(self.data):
            raise ValueError(f"{origin}: array 'data' must be floating point, got {self.data.dtype}")
        n = self.data.shape[0]
        if n == 0:
            raise ValueError(f"{origin}: array 'data' holds no trials")
        if self.conditions.shape != (n,):
            raise ValueError(f"{origin}: array 'condition' must be ({n},) to match 'data', got {tuple(self.conditions.shape)}")
        if int(self.conditions.min()) < 0 or int(self.conditions.max()) >= len(self.condition_names):
            raise ValueError(f"{origin}: 'condition' labels must index {len(self.condition_names)} condition names")
        if torch.isinf(self.data).any():
            raise ValueError(f"{origin}: array 'data' contains inf")
        if torch.isnan(self.data).all(dim=(1, 2)).any():
            bad = torch.nonzero(torch.isnan(self.data).all(dim=(1, 2))).flatten()[:5].tolist()
            raise ValueError(f"{origin}: array 'data' has trials that are entirely NaN (e.g. {bad})")
        for k, v in self.extras.items():
            if v.shape[0] != n:
                raise ValueError(f"{origin}: extra array '{k}' has {v.shape[0]} trials, 'data' has {n}")
        if not self.dt > 0:
            raise ValueError(f"{origin}: 'dt' must be > 0, got {self.dt}")
        return self

    def subset(self, idx: Tensor) -> "TrialSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TrialSet(self.data[idx], self.conditions[idx], self.condition_names, self.dt,
                        self.condition_values, {k: v[idx] for k, v in self.extras.items()}, self.meta)

    # -- cache entries: plain arrays + JSON, never pickles --------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The trial set as named arrays (the form it is cached in); ``from_arrays`` inverts it."""
        arrays = {"data": self.data.numpy(), "condition": self.conditions.numpy(), "dt": np.asarray(self.dt)}
        if self.condition_values is not None:
            arrays["condition_values"] = self.condition_values.numpy()
        arrays.update({f"extras/{k}": v.numpy() for k, v in self.extras.items()})
        scalars = {}
        for k, v in self.meta.items():
            if isinstance(v, (np.ndarray, Tensor)):
                arrays[f"meta/{k}"] = np.asarray(v)
            else:
                scalars[k] = v
        arrays["json"] = np.asarray(json.dumps({"condition_names": self.condition_names, "meta": scalars}))
        return arrays

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> "TrialSet":
        info = json.loads(str(z["json"]))
        meta = dict(info["meta"])
        meta.update({k[5:]: v for k, v in z.items() if k.startswith("meta/")})
        return cls(
            data=torch.from_numpy(z["data"]), conditions=torch.from_numpy(z["condition"]).long(),
            condition_names=list(info["condition_names"]), dt=float(z["dt"]),
            condition_values=torch.from_numpy(z["condition_values"]) if "condition_values" in z else None,
            extras={k[7:]: torch.from_numpy(v) for k, v in z.items() if k.startswith("extras/")}, meta=meta)


class ArrayCache(Protocol):
    """Where built trial sets are kept between runs (the runner's ``DiskCache``): ``arrays`` returns the
    entry ``name`` built from ``key``, or calls ``build`` and stores ``encode(value)``."""

    def arrays(self, name: str, key: dict, build: Callable[[], TrialSet],
               encode: Callable[[TrialSet], dict[str, np.ndarray]],
               decode: Callable[[dict[str, np.ndarray]], TrialSet]) -> TrialSet: ...


def load_or_generate(source: Callable[[], TrialSet], cache: Optional[ArrayCache]) -> TrialSet:
    """Call ``source`` or reuse its cached output; a source is cacheable if it has ``cache_key()``.

    A cached set that fails to load or validate is reported and regenerated, never used half-read.
    """
    key_fn = getattr(source, "cache_key", None)
    if cache is None or key_fn is None:
        return source()
    name = type(source).__name__
    return cache.arrays(name, key_fn(), source, encode=TrialSet.to_arrays,
                        decode=lambda z: TrialSet.from_arrays(z).validate(f"cached {name}"))


class TrialBatch(NamedTuple):
    """A batch of trials: positions in their split (B,), condition labels (B,), data (B, T, K), and
    per-trial extras."""

    index: Tensor
    condition: Tensor
    data: Tensor
    extras: dict


def iter_batches(trials: "TrialSet", batch_size: int, device=None):
    """The trials in order as TrialBatch-es of up to ``batch_size`` (index = position in ``trials``),
    moved to ``device``."""
    for lo in range(0, len(trials), batch_size):
        idx = torch.arange(lo, min(lo + batch_size, len(trials)))
        yield TrialBatch(idx.to(device), trials.conditions[idx].to(device), trials.data[idx].to(device),
                         {k: v[idx].to(device) for k, v in trials.extras.items()})


class _TrialDataset(Dataset):
    def __init__(self, trials: TrialSet):
        self.trials = trials

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int) -> TrialBatch:
        t = self.trials
        return TrialBatch(torch.tensor(i), t.conditions[i], t.data[i], {k: v[i] for k, v in t.extras.items()})


def stratified_split(conditions: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Split trial indices per condition into (train, val, test) by ``fractions``, seeded.

    Each evaluation part with a nonzero fraction gets at least one trial of every condition that has
    enough trials; the training part gets the rest.
    """
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[], [], []]
    for c in torch.unique(conditions):
        idx = torch.nonzero(conditions == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n = len(idx)
        n_eval = [max(1, int(round(f * n))) if f > 0 and n >= 3 else int(round(f * n)) for f in fractions[1:]]
        n_train = n - sum(n_eval)
        cuts = np.cumsum([0, n_train, *n_eval])
        for p in range(3):
            parts[p].append(idx[cuts[p]:cuts[p + 1]])
    return [torch.sort(torch.cat(p)).values for p in parts]


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation drawn from (seed, epoch): a resumed run sees the same order as an uninterrupted
    one (Lightning calls set_epoch before every epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


class TrialDataModule(pl.LightningDataModule):
    """Splits a TrialSet into train / val / test trials (stratified by condition) and held-out
    conditions, whose trials are never trained on.

    Args:
        source: callable returning a TrialSet (a simulator or a file loader).
        heldout_conditions: condition names whose trials form ``heldout_set``.
        split: fractions of each seen condition's trials for train / val / test.
        cache: keeps a cacheable source's trials between runs (the runner's ``DiskCache``); None
            generates them in memory.
    """

    def __init__(self, source: Callable[[], TrialSet], batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0, split: Sequence[float] = (0.7, 0.15, 0.15),
                 heldout_conditions: Sequence[str] = (), cache: Optional[ArrayCache] = None,
                 transform: Optional[Callable[[TrialSet], TrialSet]] = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6 or min(split) < 0:
            raise ValueError(f"data.split must be three non-negative fractions summing to 1, got {list(split)}")
        self.source, self.transform = source, transform
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.split, self.heldout_conditions, self.cache = tuple(split), list(heldout_conditions), cache
        self.full_set: Optional[TrialSet] = None

    def prepare_data(self) -> None:
        load_or_generate(self.source, self.cache)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.full_set is not None:
            return
        trials = load_or_generate(self.source, self.cache)
        if self.transform is not None:
            trials = self.transform(trials)
        self.full_set = trials.validate(type(self.source).__name__)
        names = trials.condition_names
        unknown = [c for c in self.heldout_conditions if c not in names]
        if unknown:
            raise ValueError(f"data.heldout_conditions: {unknown} are not conditions of this dataset; valid: {names}")
        present = set(torch.unique(trials.conditions).tolist())
        held = torch.tensor([names.index(c) for c in self.heldout_conditions], dtype=torch.long)
        if len(present - set(held.tolist())) < 1:
            raise ValueError(f"data.heldout_conditions holds out all {len(present)} conditions; at least one must be trained on")
        is_held = torch.isin(trials.conditions, held)
        seen = torch.nonzero(~is_held).flatten()
        parts = stratified_split(trials.conditions[seen], self.split, self.seed)
        self.train_set, self.val_set, self.test_set = (trials.subset(seen[p]) for p in parts)
        self.heldout_set = trials.subset(torch.nonzero(is_held).flatten())
        for name, s in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set)):
            if len(s) == 0:
                raise ValueError(f"data.split {list(self.split)} leaves the {name} split empty ({len(seen)} trials of seen conditions)")

    @property
    def dims(self) -> dict:
        """Late sizes the model is built with."""
        if self.full_set is None:
            self.setup()
        return {"n_neurons": self.full_set.data.shape[2], "n_steps": self.full_set.data.shape[1],
                "n_train_trials": len(self.train_set), "n_conditions": len(self.full_set.condition_names),
                "dt": self.full_set.dt}

    def _loader(self, trials: TrialSet, shuffle: bool) -> DataLoader:
        sampler = EpochShuffleSampler(len(trials), self.seed) if shuffle else None
        return DataLoader(_TrialDataset(trials), batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        """Held-out trials of seen conditions, then trials of held-out conditions (if any)."""
        loaders = [self._loader(self.test_set, shuffle=False)]
        if len(self.heldout_set):
            loaders.append(self._loader(self.heldout_set, shuffle=False))
        return loaders
