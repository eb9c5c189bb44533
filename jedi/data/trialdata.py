"""Loader for Miller-lab TrialData ``.mat`` files (Perich, Gallego & Miller 2018 centre-out reaching)
into a reach TrialSet (spec jedi.md §8g).

The file holds a struct array (default variable ``trial_data``), one element per trial, with
``epoch`` (BL / AD / WO), ``target_direction`` (rad), ``bin_size`` (s), event indices
(``idx_movement_on``, ``idx_go_cue``, ``idx_target_on``; MATLAB 1-based by default), kinematics
``vel`` / ``pos`` (T, 2) and per-array counts ``<array>_spikes`` (T, K_a). Every field name is
configurable. v7 files are read with scipy, v7.3 (HDF5) files with pymatreader.
Defaults: baseline epoch, M1 + PMd, 10 ms bins, -0.75 .. +0.75 s around movement onset (150 bins),
neurons under 1 Hz dropped. The true PSTH (for PSTH R^2) is computed from Gaussian-smoothed bins.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from jedi_rnn.data.reach_preprocess import build_reach_trialset, gaussian_smooth, heldout_order
from jedi_rnn.data.trials import TrialSet

log = logging.getLogger(__name__)
# bump when the loader's output changes, so cached sets of older code are not reused
LOADER_VERSION = 1


def read_struct_array(path: Path, variable: str, reader: str = "auto") -> list[dict]:
    """The struct array ``variable`` of a .mat file as a list of per-trial dicts."""
    if reader not in ("auto", "scipy", "pymatreader"):
        raise ValueError(f"data.source.reader must be auto, scipy or pymatreader, got {reader!r}")
    raw = None
    if reader in ("auto", "scipy"):
        from scipy.io import loadmat
        try:
            raw = loadmat(str(path), squeeze_me=True, simplify_cells=True, variable_names=[variable])
        except NotImplementedError:  # MATLAB v7.3 (HDF5)
            if reader == "scipy":
                raise ValueError(f"{path}: a MATLAB v7.3 file; use data.source.reader=pymatreader") from None
    if raw is None:
        from pymatreader import read_mat
        raw = read_mat(str(path), variable_names=[variable])
    if variable not in raw:
        raise ValueError(f"{path}: no variable '{variable}' (data.source.variable); "
                         f"variables: {[k for k in raw if not k.startswith('__')]}")
    return _to_records(raw[variable], path, variable)


def _to_records(value, path: Path, variable: str) -> list[dict]:
    """scipy gives a list of dicts (a dict for one trial); pymatreader a dict of per-trial lists."""
    if isinstance(value, dict):
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        if lengths and all(isinstance(v, list) for v in value.values()) and len(lengths) == 1:
            n = lengths.pop()
            return [{k: v[i] for k, v in value.items()} for i in range(n)]
        return [value]
    if isinstance(value, (list, np.ndarray)) and all(isinstance(v, dict) for v in value):
        return list(value)
    raise ValueError(f"{path}: variable '{variable}' is not a struct array of trials")


@dataclass
class TrialDataMat:
    """Source callable: a TrialData .mat file -> reach TrialSet.

    Args:
        path: the .mat file. variable: name of the struct array.
        arrays: spike arrays to concatenate, read from fields ``<array><spikes_suffix>``.
        epochs: values of ``epoch_field`` to keep (None keeps all trials).
        window: (start, end) s around the ``align_field`` event; bin_size: s, a multiple of the file's.
        index_base: 1 for MATLAB indices, 0 for PyalData exports.
        n_heldout: neurons drawn (seeded) as held out, placed last. min_rate_hz: drop slower neurons.
        output: counts | rates (smoothed by ``smooth_sigma`` s and scaled to [0, 1]).
    """

    path: str
    variable: str = "trial_data"
    reader: str = "auto"
    arrays: Sequence[str] = ("M1", "PMd")
    spikes_suffix: str = "_spikes"
    epoch_field: Optional[str] = "epoch"
    epochs: Optional[Sequence[str]] = ("BL",)
    direction_field: str = "target_direction"
    bin_size_field: str = "bin_size"
    align_field: str = "idx_movement_on"
    event_fields: Sequence[str] = ("idx_target_on", "idx_go_cue", "idx_movement_on")
    velocity_field: Optional[str] = "vel"
    position_field: Optional[str] = "pos"
    index_base: int = 1
    bin_size: float = 0.01
    window: Sequence[float] = (-0.75, 0.75)
    velocity_lag: float = 0.0
    min_rate_hz: float = 1.0
    psth_sigma: Optional[float] = 0.07
    n_heldout: int = 0
    output: str = "counts"
    smooth_sigma: float = 0.0
    seed: int = 0
    label: str = field(default="trialdata")

    def __post_init__(self):
        self.arrays, self.window, self.event_fields = tuple(self.arrays), tuple(self.window), tuple(self.event_fields)
        self.epochs = None if self.epochs is None else tuple(self.epochs)
        if not self.window[0] < 0 < self.window[1]:
            raise ValueError(f"data.source.window must straddle the event (start < 0 < end), got {list(self.window)}")

    def cache_key(self) -> dict:
        p = Path(self.path)
        stat = p.stat() if p.exists() else None
        return {"loader_version": LOADER_VERSION, **asdict(self), "file": [str(p.resolve()), stat.st_size if stat else None,
                                         stat.st_mtime if stat else None]}

    def _field(self, trial: dict, name: str, i: int, why: str):
        if name not in trial:
            raise ValueError(f"{self.path}: trial {i} has no field '{name}' ({why}); fields: {sorted(trial)}")
        return trial[name]

    def __call__(self) -> TrialSet:
        path = Path(self.path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: TrialData .mat file not found (data.source.path)")
        records = read_struct_array(path, self.variable, self.reader)
        if self.epoch_field is not None and self.epochs is not None:
            records = [(i, r) for i, r in enumerate(records)
                       if str(self._field(r, self.epoch_field, i, "data.source.epoch_field")) in self.epochs]
        else:
            records = list(enumerate(records))
        if not records:
            raise ValueError(f"{path}: no trials in epochs {list(self.epochs)} (data.source.epochs)")

        native = {float(self._field(r, self.bin_size_field, i, "data.source.bin_size_field")) for i, r in records}
        if len(native) != 1:
            raise ValueError(f"{path}: trials have different '{self.bin_size_field}' values {sorted(native)}")
        native = native.pop()
        factor = self.bin_size / native
        if factor < 1 - 1e-9 or abs(factor - round(factor)) > 1e-6:
            raise ValueError(f"{path}: data.source.bin_size {self.bin_size} s must be a multiple of the file's "
                             f"'{self.bin_size_field}' {native} s")
        factor = int(round(factor))
        lo, hi = (int(round(w / native)) for w in self.window)
        T = (hi - lo) // factor

        counts, vel, pos, directions, events, kept = [], [], [], [], {f: [] for f in self.event_fields}, []
        no_event = 0
        lag = int(round(self.velocity_lag / native))
        for i, r in records:
            spikes = np.concatenate([np.atleast_2d(np.asarray(
                self._field(r, a + self.spikes_suffix, i, "data.source.arrays"), dtype=np.float64).T).T
                for a in self.arrays], axis=1)  # (T_trial, K)
            onset = np.asarray(self._field(r, self.align_field, i, "data.source.align_field"), dtype=np.float64).ravel()
            if onset.size != 1 or np.isnan(onset[0]):
                no_event += 1
                continue
            onset = int(onset[0]) - self.index_base
            a, b = onset + lo, onset + lo + T * factor
            if a < 0 or b > spikes.shape[0] or (self.velocity_field and b + lag > spikes.shape[0]):
                continue
            counts.append(spikes[a:b].reshape(T, factor, -1).sum(1))
            if self.velocity_field:
                v = np.asarray(self._field(r, self.velocity_field, i, "data.source.velocity_field"), dtype=np.float64)
                vel.append(v[a + lag:b + lag].reshape(T, factor, -1).mean(1))
            if self.position_field:
                p = np.asarray(self._field(r, self.position_field, i, "data.source.position_field"), dtype=np.float64)
                pos.append(p[a:b].reshape(T, factor, -1).mean(1))
            directions.append(float(self._field(r, self.direction_field, i, "data.source.direction_field")))
            for f in self.event_fields:
                ev = np.asarray(r.get(f, np.nan), dtype=np.float64).ravel()
                ev = ev[0] if ev.size else np.nan
                events[f].append(np.floor((ev - self.index_base - a) / factor))
            kept.append(i)
        if not kept:
            raise ValueError(f"{path}: no trial has the window {list(self.window)} s around '{self.align_field}' "
                             f"inside its bins")
        if len(kept) < len(records):
            log.info("%s: %d of %d trials dropped (%d without '%s', the others with the window outside the trial)",
                     path, len(records) - len(kept), len(records), no_event, self.align_field)
        counts = np.stack(counts)
        rate = np.nansum(counts, axis=(0, 1)) / (counts.shape[0] * T * self.bin_size)
        active = rate >= self.min_rate_hz
        if not active.any():
            raise ValueError(f"{path}: no neuron fires at >= {self.min_rate_hz} Hz (data.source.min_rate_hz)")
        counts = counts[:, :, active]

        degrees = np.round(np.degrees(np.asarray(directions))) % 360
        unique = np.unique(degrees)
        conditions = np.searchsorted(unique, degrees)
        names = [f"target_{int(d):03d}deg" for d in unique]
        order, n_out = heldout_order(counts.shape[2], None, self.n_heldout, self.seed)
        time_extras = {}
        if vel:
            time_extras["velocity"] = np.stack(vel)
        if pos:
            time_extras["position"] = np.stack(pos)
        trial_extras = {"trial_id": np.asarray(kept)}
        trial_extras.update({f.replace("idx_", "") + "_bin": np.asarray(v) for f, v in events.items()})
        if self.align_field == "idx_movement_on":
            trial_extras["move_onset_bin"] = np.full(len(kept), -lo // factor)
        log.info("%s: %d trials x %d bins x %d neurons (%d dropped under %.1f Hz), %d targets", path, len(kept), T,
                 counts.shape[2], int((~active).sum()), self.min_rate_hz, len(unique))
        return build_reach_trialset(
            counts, conditions, names, self.bin_size, order, n_out, self.output, self.smooth_sigma,
            condition_values=unique, time_extras=time_extras, trial_extras=trial_extras,
            meta={"label": self.label, "file": str(path), "neurons_kept": np.flatnonzero(active),
                  "velocity_lag_s": self.velocity_lag},
            psth=self._psth(counts, conditions, len(unique)), origin=str(path))

    def _psth(self, counts: np.ndarray, conditions: np.ndarray, n_conditions: int) -> Optional[np.ndarray]:
        """True PSTH (C, T, K): binned counts smoothed by ``psth_sigma`` s, averaged per condition
        (the file has no spike times, so the smoothing is on the bins rather than NLB's 1 ms trains)."""
        if not self.psth_sigma:
            return None
        smooth = gaussian_smooth(counts, self.psth_sigma / self.bin_size)
        return np.stack([smooth[conditions == c].mean(0) for c in range(n_conditions)])
