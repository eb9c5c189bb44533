"""Writers of small files in the MC_Maze NWB layout and the TrialData .mat layout (test helpers)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

NWB_TRIALS = [  # (trial_type, trial_version, split, move_onset offset from start or None)
    (1, 0, "train", 0.5), (1, 0, "val", 0.55), (2, 1, "train", 0.45), (2, 1, "train", 0.6),
    (1, 1, "train", 0.5), (3, 0, "test", 0.5), (2, 1, "train", None), (1, 0, "none", 0.52),
]
NWB_TRIAL_LEN = 1.5
NWB_HELDOUT = [False, True, False, False, True, False]


def write_mc_maze_nwb(path: Path, drop_trial_column: str | None = None, seed: int = 0,
                      trials: list = NWB_TRIALS) -> dict:
    """Write an MC_Maze-layout NWB file; returns the ground truth used to build it."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    rng = np.random.default_rng(seed)
    nwb = NWBFile(session_description="test MC_Maze layout", identifier=f"mc-maze-test-{seed}",
                  session_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc))
    columns = {"trial_type": "maze condition", "trial_version": "maze version", "move_onset_time": "onset",
               "go_cue_time": "go", "target_on_time": "target", "split": "NLB split"}
    for name, desc in columns.items():
        if name != drop_trial_column:
            nwb.add_trial_column(name=name, description=desc)
    starts = np.arange(len(trials)) * (NWB_TRIAL_LEN + 0.3) + 0.5
    for start, (ttype, tver, split, onset) in zip(starts, trials):
        row = {"trial_type": ttype, "trial_version": tver, "split": split,
               "move_onset_time": start + onset if onset is not None else np.nan,
               "go_cue_time": start + 0.3, "target_on_time": start + 0.1}
        row.pop(drop_trial_column, None)
        nwb.add_trial(start_time=start, stop_time=start + NWB_TRIAL_LEN, **row)
    end = starts[-1] + NWB_TRIAL_LEN + 0.5
    nwb.add_unit_column(name="heldout", description="NLB held-out neuron")
    spikes = []
    for u, held in enumerate(NWB_HELDOUT):
        s = np.sort(rng.uniform(0, end, size=int(rng.integers(100, 400))))
        spikes.append(s)
        nwb.add_unit(spike_times=s, heldout=held, obs_intervals=[[0.0, end]])
    stamps = np.arange(0, end, 0.001)
    vel = np.stack([np.sin(stamps), 2 * stamps], 1)
    mod = nwb.create_processing_module(name="behavior", description="behaviour")
    mod.add(TimeSeries(name="hand_vel", data=vel, unit="mm/s", timestamps=stamps))
    mod.add(TimeSeries(name="cursor_pos", data=np.cumsum(vel, 0) * 0.001, unit="mm", timestamps=stamps))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return {"spikes": spikes, "starts": starts, "velocity": (stamps, vel)}


def write_trialdata_mat(path: Path, drop_field: str | None = None, seed: int = 0, n_trials: int = 12) -> dict:
    """Write a TrialData-layout .mat file (struct array ``trial_data``); returns its trials."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n_trials):
        T = int(rng.integers(180, 220))
        onset = int(rng.integers(90, 110))  # MATLAB 1-based index
        t = {"monkey": "Chewie", "date": "2016-10-05", "task": "CO", "epoch": "BL" if i < n_trials - 2 else "AD",
             "target_direction": float((i % 4) * np.pi / 2), "bin_size": 0.01,
             "idx_trial_start": 1.0, "idx_target_on": float(onset - 60), "idx_go_cue": float(onset - 20),
             "idx_movement_on": float(onset), "idx_trial_end": float(T),
             "pos": rng.standard_normal((T, 2)), "vel": rng.standard_normal((T, 2)),
             "M1_spikes": rng.poisson(0.2, size=(T, 5)).astype(float),
             "PMd_spikes": rng.poisson(0.1, size=(T, 3)).astype(float)}
        t["M1_spikes"][:, 4] = 0.0  # a silent neuron, dropped by min_rate_hz
        if drop_field is not None:
            t.pop(drop_field)
        trials.append(t)
    keys = list(trials[0])
    arr = np.empty(len(trials), dtype=[(k, object) for k in keys])
    for i, t in enumerate(trials):
        arr[i] = tuple(t[k] for k in keys)
    savemat(str(path), {"trial_data": arr})
    return {"trials": trials}


