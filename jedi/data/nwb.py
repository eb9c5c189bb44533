"""Loader for Neural Latents Benchmark MC_Maze recordings (DANDI 000128 and its scaled versions
000138-000140) in NWB, read with pynwb, into a reach TrialSet (spec jedi.md §8g, §7.4).

- units table: ``spike_times`` (and ``heldout``, ``obs_intervals`` when present; held-out neurons
  go last in ``data``);
- trials table: ``start_time``, ``stop_time``, the alignment field (``move_onset_time``), the
  condition fields (``trial_type``, ``trial_version``), optional ``split``, ``target_on_time``,
  ``go_cue_time``;
- processing module ``behavior``: ``hand_vel`` (lagged like NLB) and ``cursor_pos``.
Spikes are counted in [edge_j, edge_{j+1}) bins over the window around the alignment event; behaviour
is averaged over the samples in each bin. The true PSTH (for PSTH R^2) is NLB's: 1 ms spike trains
smoothed with a Gaussian (70 ms), averaged over the loaded trials of each condition, and summed into
bins (expected counts per bin). ``forward_spikes`` holds the bins after the window (fp-bps).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from jedi_rnn.data.reach_preprocess import build_reach_trialset, heldout_order
from jedi_rnn.data.trials import TrialSet

log = logging.getLogger(__name__)
# bump when the loader's output changes, so cached sets of older code are not reused
LOADER_VERSION = 1

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "none": 3}
_EDGE_EPS = 1e-7  # s; a spike on a bin edge belongs to the later bin despite float error


def bin_events(times: np.ndarray, starts: np.ndarray, bin_size: float, n_bins: int) -> np.ndarray:
    """Counts of sorted event ``times`` in n_bins bins from each start: (n_starts, n_bins)."""
    edges = starts[:, None] + bin_size * np.arange(n_bins + 1) - _EDGE_EPS  # (n, n_bins + 1)
    cum = np.searchsorted(times, edges.ravel(), side="left").reshape(edges.shape)
    return np.diff(cum, axis=1)


def bin_average(timestamps: np.ndarray, values: np.ndarray, starts: np.ndarray, bin_size: float,
                n_bins: int) -> np.ndarray:
    """Mean of the samples (M, D) falling in each bin, NaN-aware: (n_starts, n_bins, D)."""
    order = np.argsort(timestamps, kind="stable")
    ts, vals = timestamps[order], values[order].astype(np.float64)
    valid = ~np.isnan(vals)
    csum = np.concatenate([np.zeros((1, vals.shape[1])), np.cumsum(np.where(valid, vals, 0.0), 0)])
    ccnt = np.concatenate([np.zeros((1, vals.shape[1])), np.cumsum(valid, 0)])
    edges = starts[:, None] + bin_size * np.arange(n_bins + 1) - _EDGE_EPS
    pos = np.searchsorted(ts, edges.ravel(), side="left").reshape(edges.shape)
    s = csum[pos[:, 1:]] - csum[pos[:, :-1]]
    c = ccnt[pos[:, 1:]] - ccnt[pos[:, :-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _as_str(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])


def _label(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class MCMazeNWB:
    """Source callable: an MC_Maze-layout NWB file -> reach TrialSet.

    Args:
        path: the ``*_desc-train_behavior+ecephys.nwb`` file (or any file in this layout).
        bin_size: seconds (NLB: 0.005). window: (start, end) s around ``align_field`` (NLB -0.25, 0.45).
        velocity_lag: s the behaviour window is shifted by (NLB 0.1). forward: s of fp-bps bins.
        splits: values of the trials' ``split`` column to load (ignored if the column is absent).
        n_heldout: seeded held-out draw, only when the units table has no ``heldout`` column.
        output: counts (Poisson route) | rates (smoothed by ``smooth_sigma`` s, scaled to [0, 1]).
    """

    path: str
    bin_size: float = 0.005
    window: Sequence[float] = (-0.25, 0.45)
    align_field: str = "move_onset_time"
    condition_fields: Sequence[str] = ("trial_type", "trial_version")
    event_fields: Sequence[str] = ("target_on_time", "go_cue_time", "move_onset_time")
    splits: Sequence[str] = ("train", "val")
    behavior_module: str = "behavior"
    velocity_series: Optional[str] = "hand_vel"
    position_series: Optional[str] = "cursor_pos"
    velocity_lag: float = 0.1
    forward: float = 0.2
    psth_sigma: Optional[float] = 0.07
    n_heldout: int = 0
    output: str = "counts"
    smooth_sigma: float = 0.0
    seed: int = 0
    label: str = field(default="mc_maze")

    def __post_init__(self):
        self.window, self.condition_fields = tuple(self.window), tuple(self.condition_fields)
        self.event_fields, self.splits = tuple(self.event_fields), tuple(self.splits)
        if not self.window[0] < self.window[1]:
            raise ValueError(f"data.source.window must be (start, end) with start < end, got {list(self.window)}")
        n = (self.window[1] - self.window[0]) / self.bin_size
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"data.source.window length {self.window[1] - self.window[0]} s is not a multiple "
                             f"of data.source.bin_size {self.bin_size} s")

    def cache_key(self) -> dict:
        p = Path(self.path)
        stat = p.stat() if p.exists() else None
        return {"loader_version": LOADER_VERSION, **asdict(self), "file": [str(p.resolve()), stat.st_size if stat else None,
                                         stat.st_mtime if stat else None]}

    def _error(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}")

    def _trial_column(self, trials, name: str, why: str) -> np.ndarray:
        if name not in trials.colnames:
            raise self._error(f"trials table has no column '{name}' ({why}); columns: {list(trials.colnames)}")
        return np.asarray(trials[name].data[:])

    def _series(self, nwb, name: str):
        mod = nwb.processing.get(self.behavior_module)
        if mod is None:
            raise self._error(f"no processing module '{self.behavior_module}' (data.source.behavior_module); "
                              f"modules: {list(nwb.processing)}")
        if name not in mod.data_interfaces:
            raise self._error(f"processing module '{self.behavior_module}' has no series '{name}'; "
                              f"series: {list(mod.data_interfaces)}")
        ts = mod.data_interfaces[name]
        values = np.asarray(ts.data[:], dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        if ts.timestamps is not None:
            stamps = np.asarray(ts.timestamps[:], dtype=np.float64)
        else:
            stamps = ts.starting_time + np.arange(len(values)) / ts.rate
        return stamps, values

    def __call__(self) -> TrialSet:
        from pynwb import NWBHDF5IO  # optional dependency (extra "nwb")

        path = Path(self.path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: NWB file not found (data.source.path); download it with "
                                    f"`python -m experiments.fetch mc_maze`")
        with NWBHDF5IO(str(path), "r", load_namespaces=True) as io:
            nwb = io.read()
            if nwb.trials is None:
                raise self._error("the file has no trials table")
            if nwb.units is None or "spike_times" not in nwb.units.colnames:
                raise self._error("the file has no units table with 'spike_times'")
            return self._load(nwb)

    def _load(self, nwb) -> TrialSet:
        trials = nwb.trials
        for req in ("start_time", "stop_time"):
            self._trial_column(trials, req, "required")
        align = self._trial_column(trials, self.align_field, "data.source.align_field").astype(np.float64)
        cond_cols = [self._trial_column(trials, f, "data.source.condition_fields") for f in self.condition_fields]
        keep = ~np.isnan(align)
        split_code = np.full(len(align), -1)
        if "split" in trials.colnames:
            split = _as_str(trials["split"].data[:])
            keep &= np.isin(split, self.splits)
            split_code = np.array([SPLIT_CODES.get(s, -1) for s in split])
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            raise self._error(f"no trials with a valid '{self.align_field}' in splits {list(self.splits)}")

        keys = [tuple(_label(col[i]) for col in cond_cols) for i in idx]
        unique = sorted(set(keys), key=lambda k: tuple((len(x), x) for x in k))
        names = ["_".join(f"{f}{v}" for f, v in zip(self.condition_fields, k)) for k in unique]
        conditions = np.array([unique.index(k) for k in keys])

        dt, T = self.bin_size, int(round((self.window[1] - self.window[0]) / self.bin_size))
        n_fwd = int(round(self.forward / dt))
        starts = align[idx] + self.window[0]
        units = nwb.units
        n_units = len(units.id[:])
        counts = np.empty((len(idx), T, n_units))
        fwd = np.empty((len(idx), n_fwd, n_units))
        spike_lists = []
        for u in range(n_units):
            s = np.sort(np.asarray(units["spike_times"][u], dtype=np.float64))
            spike_lists.append(s)
            counts[:, :, u] = bin_events(s, starts, dt, T)
            fwd[:, :, u] = bin_events(s, starts + T * dt, dt, n_fwd)
        if "obs_intervals" in units.colnames:
            for u in range(n_units):
                iv = np.asarray(units["obs_intervals"][u], dtype=np.float64).reshape(-1, 2)
                counts[:, :, u][~self._observed(iv, starts, dt, T)] = np.nan
                fwd[:, :, u][~self._observed(iv, starts + T * dt, dt, n_fwd)] = np.nan
        heldout = np.asarray(units["heldout"].data[:], dtype=bool) if "heldout" in units.colnames else None
        order, n_out = heldout_order(n_units, heldout, self.n_heldout, self.seed)

        time_extras, meta = {}, {"label": self.label, "file": str(self.path), "velocity_lag_s": self.velocity_lag,
                                 "window_s": list(self.window), "align_field": self.align_field}
        if self.velocity_series:
            stamps, values = self._series(nwb, self.velocity_series)
            time_extras["velocity"] = bin_average(stamps, values, starts + self.velocity_lag, dt, T)
        if self.position_series:
            stamps, values = self._series(nwb, self.position_series)
            time_extras["position"] = bin_average(stamps, values, starts, dt, T)
        trial_extras = {"trial_id": idx, "nlb_split": split_code[idx], "forward_spikes": fwd[:, :, order]}
        for f in self.event_fields:
            if f in trials.colnames:
                ev = np.asarray(trials[f].data[:], dtype=np.float64)[idx]
                trial_extras[f.replace("_time", "_bin")] = np.floor((ev - starts) / dt + 1e-6)
        psth = None
        if self.psth_sigma:
            psth = self._psth(spike_lists, starts, conditions, len(unique), T)
        log.info("%s: %d trials x %d bins x %d neurons (%d held out), %d conditions", self.path, len(idx), T,
                 n_units, n_out, len(unique))
        return build_reach_trialset(counts, conditions, names, dt, order, n_out, self.output, self.smooth_sigma,
                                    time_extras=time_extras, trial_extras=trial_extras, meta=meta, psth=psth,
                                    origin=str(self.path))

    @staticmethod
    def _observed(intervals: np.ndarray, starts: np.ndarray, dt: float, T: int) -> np.ndarray:
        """(n, T) True where a bin lies inside one of the observation intervals."""
        lo = starts[:, None] + dt * np.arange(T)
        hi = lo + dt
        inside = (lo[..., None] >= intervals[:, 0] - _EDGE_EPS) & (hi[..., None] <= intervals[:, 1] + _EDGE_EPS)
        return inside.any(-1)

    def _psth(self, spike_lists, starts, conditions, n_conditions, T) -> np.ndarray:
        """NLB true PSTH (C, T, K) in expected counts per bin, neurons in file order."""
        bin_ms = self.bin_size * 1000.0
        if abs(bin_ms - round(bin_ms)) > 1e-6:
            raise ValueError(f"data.source.bin_size {self.bin_size} s must be a whole number of ms for the PSTH")
        bin_ms = int(round(bin_ms))
        sigma_ms = self.psth_sigma * 1000.0
        margin = int(np.ceil(4 * sigma_ms))
        n_ms = T * bin_ms + 2 * margin
        onehot = np.eye(n_conditions)[conditions].T  # (C, n)
        average = onehot / onehot.sum(1, keepdims=True)  # rows: mean over the condition's trials
        psth = np.empty((n_conditions, T, len(spike_lists)))
        for u, s in enumerate(spike_lists):
            trains = bin_events(s, starts - margin / 1000.0, 0.001, n_ms)  # (n, n_ms) 1 ms counts
            mean = average @ trains  # (C, n_ms)
            smooth = gaussian_filter1d(mean, sigma_ms, axis=1, mode="constant")[:, margin:margin + T * bin_ms]
            psth[:, :, u] = smooth.reshape(n_conditions, T, bin_ms).sum(-1)
        return psth
