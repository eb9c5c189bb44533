"""A tiny JEDI student on a tiny multi-frequency teacher set, for the analysis entry points."""
from functools import partial

import pytest
import torch

from experiments.glue.cache import DiskCache
from jedi_rnn.data.teachers import SyntheticTeacher
from jedi_rnn.data.trials import TrialDataModule
from jedi_rnn.lit_module import InferredEmbeddings, JediModule
from jedi_rnn.models.hypernet import LowRankHypernet
from jedi_rnn.models.rnn import RateRNN


def build_tiny_student(tmp_path, heldout=()):
    """(module, datamodule): 20 units, 4 frequencies, rank-2 hypernetwork whose output depends
    visibly on the (condition-clustered) embeddings, with V ~ U rotated. Untrained: the analyses
    only need weights. Held-out conditions get 'inferred' embeddings near their own centre."""
    source = SyntheticTeacher(n_units=20, trials_per_condition=6, frequencies=[1, 2, 3, 4], warmup_s=0.2,
                              duration_s=0.3)
    dm = TrialDataModule(source, heldout_conditions=list(heldout), cache=DiskCache(tmp_path / "cache"))
    dm.setup("fit")
    with torch.random.fork_rng():  # module init uses the global RNG; keep the caller's state
        torch.manual_seed(0)
        module = JediModule(**dm.dims, hypernet=partial(LowRankHypernet, rank=2, hidden_dim=16, factor_gain=1.6),
                            rnn=partial(RateRNN, tau=0.05, noise_std=0.0), embedding_dim=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        centers = torch.randn(dm.dims["n_conditions"], 4, generator=g)
        cond = dm.train_set.conditions
        module.embeddings.table.weight.copy_(centers[cond] + 0.01 * torch.randn(len(cond), 4, generator=g))
        module.hypernet.head.weight.normal_(0.0, 0.5, generator=g)
        bias = module.hypernet.head.bias.view(2, -1, 2)  # (U, V) halves of the output bias, (2, N, R)
        turn = torch.tensor([[0.866, -0.5], [0.5, 0.866]])  # V ~ U rot(30 deg): V^T U / N ~ g^2 rot(-30 deg)
        bias[1] = bias[0] @ turn  # an unstable, rotating origin and nontrivial fixed points
    if heldout:
        held = dm.heldout_set.conditions
        emb = centers[held] + 0.01 * torch.randn(len(held), 4, generator=g)
        module.inferred = {"heldout_cond": InferredEmbeddings(emb, held, float("nan"))}
    module.eval()
    return module, dm


@pytest.fixture
def tiny_student(tmp_path):
    return build_tiny_student(tmp_path)


@pytest.fixture
def tiny_student_heldout(tmp_path):
    """As tiny_student, with 4 Hz held out and embeddings 'inferred' for its trials."""
    return build_tiny_student(tmp_path, heldout=("4Hz",))
