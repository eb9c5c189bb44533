"""Several recording sessions, each with its own neurons, as one dataset for multi-session JEDI.

Every batch holds trials of one session (its neuron count fixes the read-in / read-out it goes
through); batches of all sessions are shuffled together. Each session is split into train / val /
test by condition with a seed drawn from (seed, session name), so a session gets the same split
whichever other sessions it is trained with.
"""
from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from jedi_rnn.data.h5trials import LazyTrialSet, write_trialset
from jedi_rnn.data.recordings import recording_file
from jedi_rnn.data.teachers import SyntheticTeacher
from jedi_rnn.data.trials import TrialBatch, TrialSet, stratified_split

AnyTrialSet = Union[TrialSet, LazyTrialSet]


def load_session(path: Path, array: str = "auto", dt: Optional[float] = None) -> AnyTrialSet:
    """One session's trials: .h5 lazily, .npz into memory, .nwb (MC_Maze layout) and .mat (TrialData)
    with their loaders' defaults."""
    if path.suffix == ".nwb":
        from jedi_rnn.data.nwb import MCMazeNWB
        return MCMazeNWB(str(path))()
    if path.suffix == ".mat":
        from jedi_rnn.data.trialdata import TrialDataMat
        return TrialDataMat(str(path))()
    return recording_file(str(path), array, dt)()


@dataclass
class SessionFiles:
    """Sessions from a list of recordings files (.h5 / .npz / .nwb / .mat), named by file stem.

    Args:
        paths: one file per session.
        array: ``rates``, ``spikes`` or ``auto`` (npz / h5 files).
        dt: seconds per bin, for files without one.
    """

    paths: Sequence[str]
    array: str = "auto"
    dt: Optional[float] = None

    def files(self) -> list[Path]:
        """The files, checked to exist (the error names every missing one and its list position)."""
        paths = [Path(p) for p in self.paths]
        if not paths:
            raise ValueError("data.source.paths is empty; give one recordings file per session")
        missing = [f"data.source.paths[{i}]={p}" for i, p in enumerate(paths) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"session file(s) do not exist: {', '.join(missing)}")
        stems = [p.stem for p in paths]
        if len(set(stems)) != len(stems):
            raise ValueError(f"data.source.paths: session names (file stems) must be unique, got {stems}")
        return paths

    def __call__(self) -> list[tuple[str, AnyTrialSet]]:
        return [(p.stem, load_session(p, self.array, self.dt)) for p in self.files()]


@dataclass
class TeacherSessions:
    """Sessions recorded from one synthetic teacher: each observes its own seeded subset of the teacher's
    units on its own trials (a disjoint share of each condition's trials), written once as HDF5 files
    under ``out_dir`` (named by session and a hash of the config) and read back lazily.

    Args:
        teacher: the teacher (its ``trials_per_condition`` and ``n_observed`` are set from ``sessions``).
        sessions: ``[{name, n_neurons, trials_per_condition}, ...]``.
        out_dir: where the session files are written.
    """

    teacher: SyntheticTeacher
    sessions: Sequence[dict]
    out_dir: str
    seed: int = 0

    def __post_init__(self):
        for i, s in enumerate(self.sessions):
            unknown = set(s) - {"name", "n_neurons", "trials_per_condition"}
            if unknown or len(s) != 3:
                raise ValueError(f"data.source.sessions[{i}] must have exactly name, n_neurons, trials_per_condition; "
                                 f"got {sorted(s)}")
            if not 1 <= int(s["n_neurons"]) <= self.teacher.n_units:
                raise ValueError(f"data.source.sessions[{i}].n_neurons must be in [1, {self.teacher.n_units}]")

    def files(self) -> list[Path]:
        key = {"teacher": self.teacher.cache_key(), "sessions": [dict(s) for s in self.sessions], "seed": self.seed}
        tag = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        paths = [Path(self.out_dir) / f"{s['name']}-{tag}.h5" for s in self.sessions]
        if not all(p.is_file() for p in paths):
            self._write(paths)
        return paths

    def _write(self, paths: list[Path]) -> None:
        per = [int(s["trials_per_condition"]) for s in self.sessions]
        teacher = dataclasses.replace(self.teacher, trials_per_condition=sum(per), n_observed=None)
        trials = teacher()
        rng = np.random.default_rng(self.seed)
        cuts = np.cumsum([0, *per])
        share: list[list[np.ndarray]] = [[] for _ in self.sessions]
        for c in np.unique(trials.conditions.numpy()):
            idx = rng.permutation(np.flatnonzero(trials.conditions.numpy() == c))
            for s in range(len(self.sessions)):
                share[s].append(idx[cuts[s]:cuts[s + 1]])
        for s, (spec, path) in enumerate(zip(self.sessions, paths)):
            units = np.sort(rng.choice(teacher.n_units, int(spec["n_neurons"]), replace=False))
            rows = torch.from_numpy(np.sort(np.concatenate(share[s])))
            sub = trials.subset(rows)
            write_trialset(TrialSet(sub.data[:, :, units].contiguous(), sub.conditions, sub.condition_names, sub.dt),
                           path)

    def __call__(self) -> list[tuple[str, AnyTrialSet]]:
        return [(str(s["name"]), load_session(p)) for s, p in zip(self.sessions, self.files())]


class SessionSplit(Dataset):
    """One split of every session, indexed globally (session 0's trials first). Items are TrialBatch-es
    with ``index`` the global position and ``extras["session"]`` the session's number."""

    def __init__(self, parts: list[AnyTrialSet], conditions: list[torch.Tensor]):
        self.parts, self.conditions_per_part = parts, conditions
        self.offsets = np.cumsum([0, *[len(p) for p in parts]])
        self.session = torch.repeat_interleave(torch.arange(len(parts)), torch.as_tensor([len(p) for p in parts]))
        self.conditions = torch.cat(conditions) if conditions else torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> TrialBatch:
        s = bisect.bisect_right(self.offsets, i) - 1
        j = i - int(self.offsets[s])
        return TrialBatch(torch.tensor(i), self.conditions[i], self.parts[s].data[j], {"session": torch.tensor(s)})


class SessionBatchSampler(Sampler):
    """Batches of one session each: trials shuffled within sessions and the batches of all sessions shuffled
    together, from (seed, epoch) when ``shuffle`` (Lightning calls set_epoch); in order otherwise.

    ``balance``: every session gives as many batches per epoch as the largest one (a smaller session's
    trials are drawn in further shuffled passes), so its read-in / read-out train as often.
    """

    def __init__(self, session: torch.Tensor, batch_size: int, shuffle: bool, seed: int, balance: bool = False):
        self.session, self.batch_size, self.shuffle, self.seed, self.epoch = session, batch_size, shuffle, seed, 0
        self.balance = balance
        self.per_session = [math.ceil(int((session == s).sum()) / batch_size) for s in torch.unique(session)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _passes(self, idx: torch.Tensor, gen: torch.Generator, n_batches: int) -> list[list[int]]:
        batches: list[list[int]] = []
        while len(batches) < n_batches:
            order = idx[torch.randperm(len(idx), generator=gen)] if self.shuffle else idx
            batches.extend(order[lo:lo + self.batch_size].tolist() for lo in range(0, len(order), self.batch_size))
        return batches[:n_batches]

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        target = max(self.per_session)
        batches = []
        for s, n in zip(torch.unique(self.session), self.per_session):
            idx = torch.nonzero(self.session == s).flatten()
            batches.extend(self._passes(idx, gen, target if self.balance else n))
        order = torch.randperm(len(batches), generator=gen).tolist() if self.shuffle else range(len(batches))
        return iter([batches[b] for b in order])

    def __len__(self) -> int:
        return max(self.per_session) * len(self.per_session) if self.balance else sum(self.per_session)


class SessionsDataModule(pl.LightningDataModule):
    """Several sessions (a source returning ``[(name, trials), ...]``) split per session into train / val /
    test trials, with batches of one session each.

    Args:
        source: ``SessionFiles`` (a list of files) or ``TeacherSessions`` (synthetic).
        sessions: names of the sessions to use (None: all), e.g. one session for a per-session model.
        balance_sessions: every session gives as many training batches per epoch as the largest.
        split: fractions of each session's trials (stratified by condition) for train / val / test.
    """

    def __init__(self, source, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 split: Sequence[float] = (0.7, 0.15, 0.15), sessions: Optional[Sequence[str]] = None,
                 balance_sessions: bool = False):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6 or min(split) < 0:
            raise ValueError(f"data.split must be three non-negative fractions summing to 1, got {list(split)}")
        self.source, self.batch_size, self.num_workers, self.seed = source, batch_size, num_workers, seed
        self.split, self.keep = tuple(split), None if sessions is None else list(sessions)
        self.balance_sessions = balance_sessions
        self.session_names: Optional[list[str]] = None

    def prepare_data(self) -> None:
        files = getattr(self.source, "files", None)
        if files is not None:
            files()  # missing files fail here, before anything is built; synthetic ones are written

    def setup(self, stage: Optional[str] = None) -> None:
        if self.session_names is not None:
            return
        sessions = self.source()
        if self.keep is not None:
            names = [n for n, _ in sessions]
            unknown = [k for k in self.keep if k not in names]
            if unknown:
                raise ValueError(f"data.sessions: {unknown} are not sessions of data.source; valid: {names}")
            sessions = [(n, t) for n, t in sessions if n in self.keep]
        dts = {n: t.dt for n, t in sessions}
        if len(set(dts.values())) != 1:
            raise ValueError(f"sessions must share one bin size dt; got {dts}")
        names = sorted({c for _, t in sessions for c in t.condition_names})
        self.condition_names, self.dt = names, next(iter(dts.values()))
        self.session_names = [n for n, _ in sessions]
        self.session_neurons = [int(t.data.shape[2]) for _, t in sessions]
        self.n_steps = max(int(t.data.shape[1]) for _, t in sessions)
        parts: list[list] = [[], [], []]
        labels: list[list] = [[], [], []]
        for name, trials in sessions:
            to_global = torch.tensor([names.index(c) for c in trials.condition_names])
            seed = self.seed * 1_000_003 + zlib.crc32(name.encode())
            for p, idx in enumerate(stratified_split(trials.conditions, self.split, seed)):
                if len(idx) == 0 and p == 0:
                    raise ValueError(f"data.split {list(self.split)} leaves session {name!r} no training trials")
                parts[p].append(trials.subset(idx))
                labels[p].append(to_global[trials.conditions[idx]])
        self.train_set, self.val_set, self.test_set = (SessionSplit(p, c) for p, c in zip(parts, labels))
        for split, s in (("val", self.val_set), ("test", self.test_set)):
            if len(s) == 0:
                raise ValueError(f"data.split {list(self.split)} leaves the {split} split empty in every session")

    @property
    def dims(self) -> dict:
        """Late sizes the multi-session model is built with."""
        if self.session_names is None:
            self.setup()
        return {"session_names": list(self.session_names), "session_neurons": list(self.session_neurons),
                "n_steps": self.n_steps, "n_train_trials": len(self.train_set), "dt": self.dt}

    def _loader(self, split: SessionSplit, shuffle: bool) -> DataLoader:
        sampler = SessionBatchSampler(split.session, self.batch_size, shuffle, self.seed, balance=shuffle and self.balance_sessions)
        return DataLoader(split, batch_sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
