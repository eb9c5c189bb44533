"""Fixtures: small MC_Maze-layout NWB and TrialData .mat files written once per module."""
from __future__ import annotations

import pytest

from tests.jedi.monkey.reach_files import write_mc_maze_nwb, write_trialdata_mat


@pytest.fixture(scope="module")
def mc_maze_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nwb") / "sub-test_desc-train_behavior+ecephys.nwb"
    truth = write_mc_maze_nwb(path)
    return path, truth


@pytest.fixture(scope="module")
def trialdata_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mat") / "Chewie_CO_FF_2016-10-05.mat"
    truth = write_trialdata_mat(path)
    return path, truth
