"""Recordings in HDF5, one trial per chunk, read lazily: memory stays flat as the trial count grows.

File layout (one session per file; the same arrays ``jedi_rnn.data.recordings`` reads eagerly):
``rates`` or ``spikes`` (trials, time, neurons) float32, chunked (1, time, neurons); ``condition``
(trials,) int64; ``condition_names`` (C,) strings; ``dt`` (seconds per bin).

Write a generated teacher's recordings with
``python -m jedi_rnn.data.h5trials jedi_rnn.data.teachers.SyntheticTeacher OUT.h5 seed=1 ...``
(any source class returning a TrialSet, with its arguments as key=value).
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import h5py
import numpy as np
import torch
import yaml
from torch import Tensor

from jedi_rnn.data.trials import TrialSet

TRIAL_ARRAYS = ("rates", "spikes")


class H5TrialWriter:
    """Writes an HDF5 recordings file block by block, to a temporary file renamed into place on a clean
    exit (an interrupted write leaves no file behind); every trial must be written once.

    ``with H5TrialWriter(path, n_trials, n_steps, n_neurons, dt, names) as w: w.write(start, data, labels)``
    """

    def __init__(self, path: str | Path, n_trials: int, n_steps: int, n_neurons: int, dt: float,
                 condition_names: list[str], array: str = "rates", compression: Optional[str] = None):
        if array not in TRIAL_ARRAYS:
            raise ValueError(f"array must be one of {list(TRIAL_ARRAYS)}, got {array!r}")
        self.path, self.n_trials, self.array = Path(path), n_trials, array
        self.shape = (n_trials, n_steps, n_neurons)
        self.dt, self.condition_names, self.compression = float(dt), [str(n) for n in condition_names], compression
        self._written = np.zeros(n_trials, bool)

    def __enter__(self) -> "H5TrialWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp.h5")
        os.close(fd)
        # libver latest: readers open it in SWMR mode, which lets them name the trials a truncated copy lost
        self._file = h5py.File(self._tmp, "w", libver="latest")
        self._file.create_dataset("dt", data=self.dt)
        self._file.create_dataset("condition_names", data=self.condition_names, dtype=h5py.string_dtype())
        self._labels = self._file.create_dataset("condition", shape=(self.n_trials,), dtype="i8")
        self._data = self._file.create_dataset(self.array, shape=self.shape, dtype="f4",
                                               chunks=(1, *self.shape[1:]), compression=self.compression)
        return self

    def write(self, start: int, data: np.ndarray | Tensor, conditions: np.ndarray | Tensor) -> None:
        """Trials ``start .. start + len(data)``: data (b, T, K), integer condition labels (b,)."""
        data, conditions = np.asarray(data, np.float32), np.asarray(conditions, np.int64)
        stop = start + len(data)
        if data.shape[1:] != self.shape[1:] or conditions.shape != (len(data),) or not 0 <= start <= stop <= self.n_trials:
            raise ValueError(f"{self.path}: block of trials {start}..{stop} shaped {data.shape} / labels "
                             f"{conditions.shape} does not fit a file of shape {self.shape}")
        if len(conditions) and (conditions.min() < 0 or conditions.max() >= len(self.condition_names)):
            raise ValueError(f"{self.path}: condition labels must index {len(self.condition_names)} condition names")
        self._data[start:stop] = data
        self._labels[start:stop] = conditions
        self._written[start:stop] = True

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        if exc_type is None and self._written.all():
            os.replace(self._tmp, self.path)
            return
        os.remove(self._tmp)
        if exc_type is None:
            missing = np.flatnonzero(~self._written)
            raise ValueError(f"{self.path}: trials {missing[:5].tolist()} ({len(missing)} in all) were never written")


def write_trialset(trials: TrialSet, path: str | Path, array: str = "rates", block: int = 1024,
                   compression: Optional[str] = None) -> Path:
    """Write a TrialSet's data, labels, condition names and dt as an HDF5 recordings file."""
    n, T, K = trials.data.shape
    with H5TrialWriter(path, n, T, K, trials.dt, trials.condition_names, array, compression) as w:
        for lo in range(0, n, block):
            w.write(lo, trials.data[lo:lo + block].numpy(), trials.conditions[lo:lo + block].numpy())
    return Path(path)


def _open(path: Path) -> h5py.File:
    """Open read-only; SWMR mode (files written with libver=latest) skips the end-of-file check, so a
    truncated copy opens and ``chunk_offsets`` can name the trials it lost."""
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError:
        pass
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: cannot be opened as HDF5, the file is truncated or corrupt ({err})") from err


def chunk_offsets(path: Path, dset: h5py.Dataset) -> Optional[np.ndarray]:
    """Byte offset in the file of each trial's chunk (n,), or None when the dataset is not stored one
    trial per chunk. Raises naming the file and the first trial whose chunk lies past the end of the
    file or was never written (reading either would silently give fill values)."""
    if dset.chunks is None or dset.chunks != (1, *dset.shape[1:]):
        return None  # h5py reads it; a truncation surfaces as a read error naming the trial
    size = path.stat().st_size
    starts = np.zeros(dset.shape[0], np.int64)
    ends = np.zeros(dset.shape[0], np.int64)  # byte end of each trial's chunk; 0 = not allocated

    def record(info):
        starts[info.chunk_offset[0]], ends[info.chunk_offset[0]] = info.byte_offset, info.byte_offset + info.size
    dset.id.chunk_iter(record)
    bad = np.flatnonzero((ends == 0) | (ends > size))
    if len(bad):
        i = int(bad[0])
        why = "was never written" if ends[i] == 0 else f"lies past the end of the file ({size} bytes)"
        raise ValueError(f"{path}: trial {i} of '{dset.name.lstrip('/')}' {why}; the file is truncated or "
                         f"incomplete ({len(bad)} of {dset.shape[0]} trials unreadable)")
    return starts


class H5TrialArray:
    """Lazy (n, T, K) float32 view of the trials array of an HDF5 recordings file.

    Indexing reads from disk: an int gives a (T, K) tensor, a slice / index list / tensor a (b, T, K)
    tensor; ``take(idx)`` gives a lazy view of a subset. An unfiltered one-trial-per-chunk array is read
    as raw bytes at its chunks' offsets (``raw_offsets``, one pread per trial); others through h5py.
    The file opens on first read in each process (a DataLoader worker gets its own handle) and no handle
    is pickled.
    """

    def __init__(self, path: str | Path, name: str, file_shape, dtype, rows: Optional[np.ndarray] = None,
                 raw_offsets: Optional[np.ndarray] = None):
        self.path, self.name, self.file_shape, self.dtype = Path(path), name, tuple(file_shape), np.dtype(dtype)
        self.rows = np.arange(self.file_shape[0]) if rows is None else np.asarray(rows, np.int64)
        self.raw_offsets = raw_offsets
        self._nbytes = int(np.prod(self.file_shape[1:])) * self.dtype.itemsize
        self._handle, self._pid = None, None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.rows), *self.file_shape[1:])

    ndim = 3

    def __len__(self) -> int:
        return len(self.rows)

    def _opened(self):
        """This process's handle: a file descriptor (raw reads) or an h5py dataset."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = os.open(self.path, os.O_RDONLY) if self.raw_offsets is not None else _open(self.path)[self.name]
            self._pid = os.getpid()
        return self._handle

    def take(self, idx) -> "H5TrialArray":
        return H5TrialArray(self.path, self.name, self.file_shape, self.dtype, self.rows[np.asarray(idx, np.int64)],
                            self.raw_offsets)

    def _read(self, row: int) -> np.ndarray:
        try:
            if self.raw_offsets is None:
                x = self._opened()[row]
            else:
                buf = os.pread(self._opened(), self._nbytes, int(self.raw_offsets[row]))
                if len(buf) < self._nbytes:
                    raise OSError(f"read {len(buf)} of {self._nbytes} bytes")
                x = np.frombuffer(buf, self.dtype).reshape(self.file_shape[1:])
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.path}: trial {row} of '{self.name}' cannot be read, the file is truncated "
                             f"or corrupt ({err})") from err
        if np.isinf(x).any() or np.isnan(x).all() or (self.name == "spikes" and np.isnan(x).any()):
            raise ValueError(f"{self.path}: trial {row} of '{self.name}' contains inf, is entirely NaN, or has NaN "
                             "spike counts")
        return x

    def __getitem__(self, key) -> Tensor:
        if isinstance(key, (int, np.integer)) or (isinstance(key, Tensor) and key.ndim == 0):
            return torch.from_numpy(self._read(int(self.rows[int(key)])).astype(np.float32))
        rows = self.rows[key] if isinstance(key, slice) else self.rows[np.asarray(key, np.int64)]
        out = np.empty((len(rows), *self.file_shape[1:]), np.float32)
        for j, r in enumerate(rows):
            out[j] = self._read(int(r))
        return torch.from_numpy(out)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": None}

    def __del__(self):
        if isinstance(getattr(self, "_handle", None), int) and self._pid == os.getpid():
            os.close(self._handle)


@dataclass
class LazyTrialSet:
    """A TrialSet whose data stays on disk (an ``H5TrialArray``); labels and names are in memory.

    Offers what the datamodules and models read of a TrialSet: ``data`` (indexing reads), ``conditions``,
    ``condition_names``, ``dt``, ``extras`` (none), ``meta``, ``subset`` and ``validate``.
    """

    data: H5TrialArray
    conditions: Tensor
    condition_names: list[str]
    dt: float
    condition_values: Optional[Tensor] = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)

    def subset(self, idx) -> "LazyTrialSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return LazyTrialSet(self.data.take(idx.numpy()), self.conditions[idx], self.condition_names, self.dt,
                            self.condition_values, {}, self.meta)

    def validate(self, origin: str) -> "LazyTrialSet":
        """Shape and label checks that need no pass over the data (each trial is checked when read)."""
        n = len(self)
        if n == 0:
            raise ValueError(f"{origin}: array '{self.data.name}' holds no trials")
        if self.conditions.shape != (n,):
            raise ValueError(f"{origin}: array 'condition' must be ({n},) to match '{self.data.name}', "
                             f"got {tuple(self.conditions.shape)}")
        if int(self.conditions.min()) < 0 or int(self.conditions.max()) >= len(self.condition_names):
            raise ValueError(f"{origin}: 'condition' labels must index {len(self.condition_names)} condition names")
        if not self.dt > 0:
            raise ValueError(f"{origin}: 'dt' must be > 0, got {self.dt}")
        return self


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def open_h5_trials(path: str | Path, array: str = "auto", dt: Optional[float] = None) -> LazyTrialSet:
    """Open an HDF5 recordings file lazily; errors name the file and the array (or trial) at fault."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.source.path: {path} does not exist")
    if array not in ("auto", *TRIAL_ARRAYS):
        raise ValueError(f"data.source.array must be auto, rates or spikes, got {array!r}")
    f = _open(path)
    try:
        name = array if array != "auto" else ("rates" if "rates" in f else "spikes")
        if name not in f:
            raise KeyError(f"{path}: array '{name}' is missing (found: {sorted(f.keys())}); "
                           "the file needs 'rates' or 'spikes' shaped (trials, time, neurons)")
        dset = f[name]
        if dset.ndim != 3 or not np.issubdtype(dset.dtype, np.number):
            raise ValueError(f"{path}: array '{name}' must be numeric (trials, time, neurons), got shape "
                             f"{dset.shape} dtype {dset.dtype}")
        offsets = chunk_offsets(path, dset)
        raw = offsets is not None and dset.id.get_create_plist().get_nfilters() == 0
        if "condition" not in f:
            raise KeyError(f"{path}: array 'condition' (trials,) is missing (found: {sorted(f.keys())})")
        cond = f["condition"][()]
        if cond.shape != (dset.shape[0],):
            raise ValueError(f"{path}: array 'condition' must be ({dset.shape[0]},) to match '{name}', got {cond.shape}")
        if "condition_names" in f:
            names, labels = _strings(f["condition_names"][()]), cond.astype(np.int64)
        else:
            values, labels = np.unique(_strings(cond) if cond.dtype.kind in "OSU" else cond, return_inverse=True)
            names = [str(v) for v in values]
        dt = dt if dt is not None else (float(f["dt"][()]) if "dt" in f else None)
        if dt is None:
            raise KeyError(f"{path}: array 'dt' is missing; set data.source.dt=<seconds per bin>")
        array = H5TrialArray(path, name, dset.shape, dset.dtype, raw_offsets=offsets if raw else None)
    finally:
        f.close()
    return LazyTrialSet(array, torch.as_tensor(labels, dtype=torch.long), names, dt,
                        meta={"label": f"recordings ({path.name}, {name}, on disk)"}).validate(str(path))


def main(argv: list[str]) -> None:
    """``python -m jedi_rnn.data.h5trials SOURCE_CLASS OUT.h5 [key=value ...]``: build the source (e.g.
    jedi_rnn.data.teachers.SyntheticTeacher), call it and write its trials."""
    if len(argv) < 2:
        raise SystemExit(__doc__)
    from hydra.utils import instantiate

    kwargs = {}
    for item in argv[2:]:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"argument {item!r} must be key=value")
        kwargs[key] = yaml.safe_load(value)
    trials = instantiate({"_target_": argv[0], **kwargs})()
    out = write_trialset(trials, argv[1])
    print(f"wrote {len(trials)} trials {tuple(trials.data.shape)} to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
