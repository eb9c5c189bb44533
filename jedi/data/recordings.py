"""Bring-your-own recordings: trials of rates or spike counts from a .npz or .h5 file.

Arrays: ``rates`` or ``spikes`` (trials, time, neurons); optional ``condition`` (trials,) integer
labels or strings (read only by the analyses; without it every trial is one ``unlabelled``
condition), ``dt`` (seconds per bin) and ``condition_names``. Missing, mis-shaped or corrupt
arrays give an error naming the file and the array. ``recording_file`` reads an .h5 file lazily
(``jedi_rnn.data.h5trials``: trials stay on disk) and an .npz file into memory.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from jedi_rnn.data.h5trials import LazyTrialSet, open_h5_trials
from jedi_rnn.data.trials import TrialSet

H5_SUFFIXES = (".h5", ".hdf5")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"data.source.path: {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if path.suffix in H5_SUFFIXES:
            import h5py
            with h5py.File(path, "r") as f:
                arrays = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
                if "condition_names" in arrays:  # h5py gives variable-length strings as bytes
                    arrays["condition_names"] = np.asarray([n.decode() if isinstance(n, bytes) else n
                                                            for n in arrays["condition_names"]])
                return arrays
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: cannot be read, the file is truncated or corrupt ({type(err).__name__}: {err})") from err
    raise ValueError(f"data.source.path: {path} must be a .npz or .h5 file")


@dataclass
class RecordingFile:
    """A TrialSet source reading one recordings file.

    Args:
        path: the .npz / .h5 file.
        array: ``rates``, ``spikes`` or ``auto`` (rates if present, else spikes).
        dt: seconds per bin; overrides the file's ``dt`` (required if the file has none).
    """

    path: str
    array: str = "auto"
    dt: Optional[float] = None

    def cache_key(self) -> dict:
        stat = Path(self.path).stat()
        return {"path": str(Path(self.path).resolve()), "size": stat.st_size, "mtime": stat.st_mtime,
                "array": self.array, "dt": self.dt}

    def __call__(self) -> TrialSet:
        path = Path(self.path)
        arrays = _read_arrays(path)
        if self.array not in ("auto", "rates", "spikes"):
            raise ValueError(f"data.source.array must be auto, rates or spikes, got {self.array!r}")
        name = self.array if self.array != "auto" else ("rates" if "rates" in arrays else "spikes")
        if name not in arrays:
            raise KeyError(f"{path}: array '{name}' is missing (found: {sorted(arrays)}); "
                           "the file needs 'rates' or 'spikes' shaped (trials, time, neurons)")
        data = arrays[name]
        if data.ndim != 3:
            raise ValueError(f"{path}: array '{name}' must be (trials, time, neurons), got shape {data.shape}")
        if not np.issubdtype(data.dtype, np.number):
            raise ValueError(f"{path}: array '{name}' must be numeric, got dtype {data.dtype}")
        if name == "spikes" and np.isnan(data).any():
            raise ValueError(f"{path}: array 'spikes' contains NaN; spike counts cannot be missing, use 'rates' with NaN")
        # JEDI trains without labels: a file without 'condition' is one unlabelled condition
        cond = arrays["condition"] if "condition" in arrays else np.full(data.shape[0], "unlabelled")
        if cond.shape != (data.shape[0],):
            raise ValueError(f"{path}: array 'condition' must be ({data.shape[0]},) to match '{name}', got {cond.shape}")
        if "condition_names" in arrays:
            names = [str(n) for n in arrays["condition_names"]]
            labels = cond.astype(np.int64)
        else:
            names_arr, labels = np.unique(cond, return_inverse=True)
            names = [str(n) for n in names_arr]
        dt = self.dt if self.dt is not None else (float(arrays["dt"]) if "dt" in arrays else None)
        if dt is None:
            raise KeyError(f"{path}: array 'dt' is missing; set data.source.dt=<seconds per bin>")
        return TrialSet(data=torch.as_tensor(data, dtype=torch.float32), conditions=torch.as_tensor(labels, dtype=torch.long),
                        condition_names=names, dt=dt, meta={"label": f"recordings ({path.name}, {name})"}).validate(str(path))


@dataclass
class LazyRecordingFile:
    """A source reading an HDF5 recordings file lazily: the trials stay on disk and are read per batch
    (never cached: the file is the cache). Args as ``RecordingFile``."""

    path: str
    array: str = "auto"
    dt: Optional[float] = None

    def __call__(self) -> LazyTrialSet:
        return open_h5_trials(self.path, self.array, self.dt)


def recording_file(path: str, array: str = "auto", dt: Optional[float] = None,
                   lazy: bool = True) -> Union[RecordingFile, LazyRecordingFile]:
    """The source for a recordings file: .h5 / .hdf5 read lazily (``lazy=True``), otherwise into memory."""
    if lazy and Path(path).suffix in H5_SUFFIXES:
        return LazyRecordingFile(path, array, dt)
    return RecordingFile(path, array, dt)
