"""MC_Maze NWB and TrialData .mat loaders: shapes, binning against numpy histograms, labels, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jedi_rnn.data.nwb import MCMazeNWB
from jedi_rnn.data.trialdata import TrialDataMat

from tests.jedi.monkey.reach_files import NWB_HELDOUT, NWB_TRIALS, write_mc_maze_nwb, write_trialdata_mat

BIN = 0.005
WINDOW = (-0.25, 0.45)


def _kept_nwb_trials():
    return [i for i, (_, _, split, onset) in enumerate(NWB_TRIALS) if split in ("train", "val") and onset is not None]


def test_nwb_counts_match_numpy_histogram(mc_maze_file):
    path, truth = mc_maze_file
    ts = MCMazeNWB(str(path), bin_size=BIN, window=WINDOW)()
    kept = _kept_nwb_trials()
    assert ts.data.shape == (len(kept), 140, len(NWB_HELDOUT))
    assert ts.extras["trial_id"].tolist() == kept
    order = [u for u, h in enumerate(NWB_HELDOUT) if not h] + [u for u, h in enumerate(NWB_HELDOUT) if h]
    assert ts.meta["n_heldout"] == sum(NWB_HELDOUT)
    for row, i in enumerate(kept):
        onset = truth["starts"][i] + NWB_TRIALS[i][3]
        edges = onset + WINDOW[0] + BIN * np.arange(141)
        fwd_edges = onset + WINDOW[1] + BIN * np.arange(41)
        for col, u in enumerate(order):
            expect = np.histogram(truth["spikes"][u], bins=edges)[0]
            np.testing.assert_array_equal(ts.data[row, :, col].numpy(), expect)
            np.testing.assert_array_equal(ts.extras["forward_spikes"][row, :, col].numpy(),
                                          np.histogram(truth["spikes"][u], bins=fwd_edges)[0])
    torch.testing.assert_close(ts.extras["heldout_spikes"], ts.data[:, :, -2:])
    assert ts.extras["move_onset_bin"].tolist() == [50] * len(kept)


def test_nwb_conditions_velocity_and_psth(mc_maze_file):
    path, truth = mc_maze_file
    ts = MCMazeNWB(str(path), bin_size=BIN, window=WINDOW, velocity_lag=0.1, psth_sigma=0.07)()
    kept = _kept_nwb_trials()
    pairs = [NWB_TRIALS[i][:2] for i in kept]
    assert ts.condition_names == ["trial_type1_trial_version0", "trial_type1_trial_version1",
                                  "trial_type2_trial_version1"]
    assert [ts.condition_names[c] for c in ts.conditions] == [f"trial_type{a}_trial_version{b}" for a, b in pairs]
    # velocity: mean of the 1 ms samples inside each bin of the window shifted by the 100 ms lag
    stamps, vel = truth["velocity"]
    i, row = kept[2], 2
    start = truth["starts"][i] + NWB_TRIALS[i][3] + WINDOW[0] + 0.1
    for b in (0, 37, 139):
        inside = (stamps >= start + b * BIN - 1e-9) & (stamps < start + (b + 1) * BIN - 1e-9)
        np.testing.assert_allclose(ts.extras["velocity"][row, b].numpy(), vel[inside].mean(0), rtol=1e-5)
    # PSTH of condition 2 (two trials), neuron column 0 = unit 0: 1 ms trains smoothed with an
    # explicit truncated Gaussian (sigma 70 ms), trial mean, summed per 5 ms bin
    sig, margin = 70, 280
    kernel = np.exp(-0.5 * (np.arange(-margin, margin + 1) / sig) ** 2)
    kernel /= kernel.sum()
    trains = []
    for i in (kept[2], kept[3]):
        lo = truth["starts"][i] + NWB_TRIALS[i][3] + WINDOW[0] - margin / 1000
        trains.append(np.histogram(truth["spikes"][0], bins=lo + 0.001 * np.arange(700 + 2 * margin + 1))[0])
    smooth = np.convolve(np.mean(trains, 0), kernel, mode="same")[margin:margin + 700]
    np.testing.assert_allclose(np.asarray(ts.meta["psth"])[2, :, 0], smooth.reshape(140, 5).sum(1), atol=1e-10)


def test_nwb_rates_output_is_smoothed_and_scaled(mc_maze_file):
    path, _ = mc_maze_file
    ts = MCMazeNWB(str(path), output="rates", smooth_sigma=0.05, psth_sigma=None)()
    assert float(ts.data.min()) >= 0.0 and float(ts.data.max()) == pytest.approx(1.0)
    np.testing.assert_allclose(ts.data.amax(dim=(0, 1)).numpy(), 1.0, rtol=1e-6)
    assert ts.meta["rate_scale"].shape == (len(NWB_HELDOUT),)


def test_nwb_missing_field_names_field_and_file(tmp_path):
    path = tmp_path / "broken.nwb"
    write_mc_maze_nwb(path, drop_trial_column="trial_version")
    with pytest.raises(ValueError, match=r"broken\.nwb.*'trial_version'"):
        MCMazeNWB(str(path))()
    with pytest.raises(ValueError, match=r"broken\.nwb.*no series 'finger_vel'"):
        MCMazeNWB(str(path), condition_fields=["trial_type"], velocity_series="finger_vel")()


@pytest.mark.parametrize("reader", ["scipy", "pymatreader"])
def test_trialdata_window_epochs_and_labels(trialdata_file, reader):
    path, truth = trialdata_file
    ts = TrialDataMat(str(path), reader=reader, window=(-0.75, 0.75), bin_size=0.01, min_rate_hz=1.0)()
    base = [t for t in truth["trials"] if t["epoch"] == "BL"]
    assert ts.data.shape == (len(base), 150, 7)  # 8 neurons, the silent one dropped
    assert ts.condition_names == ["target_000deg", "target_090deg", "target_180deg", "target_270deg"]
    assert ts.conditions.tolist() == [i % 4 for i in range(len(base))]
    spikes = np.concatenate([base[3]["M1_spikes"], base[3]["PMd_spikes"]], 1)[:, [0, 1, 2, 3, 5, 6, 7]]
    onset = int(base[3]["idx_movement_on"]) - 1  # MATLAB 1-based
    np.testing.assert_array_equal(ts.data[3].numpy(), spikes[onset - 75:onset + 75])
    np.testing.assert_allclose(ts.extras["velocity"][3].numpy(), base[3]["vel"][onset - 75:onset + 75], rtol=1e-6)
    assert ts.extras["go_cue_bin"][3].item() == 75 - 20
    assert ts.extras["move_onset_bin"].tolist() == [75] * len(base)


def test_trialdata_rebinning_sums_counts(trialdata_file):
    path, truth = trialdata_file
    ts = TrialDataMat(str(path), bin_size=0.02, min_rate_hz=0.0, epochs=None)()
    t = truth["trials"][0]
    spikes = np.concatenate([t["M1_spikes"], t["PMd_spikes"]], 1)
    onset = int(t["idx_movement_on"]) - 1
    np.testing.assert_array_equal(ts.data[0].numpy(), spikes[onset - 75:onset + 75].reshape(75, 2, 8).sum(1))
    assert len(ts) == len(truth["trials"])


def test_trialdata_missing_field_names_field_and_file(tmp_path):
    path = tmp_path / "no_onset.mat"
    write_trialdata_mat(path, drop_field="idx_movement_on")
    with pytest.raises(ValueError, match=r"no_onset\.mat.*'idx_movement_on'"):
        TrialDataMat(str(path))()
