"""Per-condition views of a trained JEDI student, shared by the dynamics analyses.

The student's dynamics for condition k are those of its weights at the mean training embedding of
that condition, c_k = mean of the training trials' embeddings with label k. Rollouts start from the
module's own initial state for real training trials (x_0 = atanh(y_0) in unit mode, or from the
context) and run the noise-free map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from jedi_rnn.dynamics.maps import TanhRNNMap
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights


@dataclass
class StudentContexts:
    """The student at each training condition.

    map: TanhRNNMap over C contexts (float64, detached); weights: the hypernetwork's output;
    embeddings (C, d); condition_ids (C,) indices into condition_names of the TrialSet;
    names: list of C condition names; values (C,) condition values or None; dt in seconds.
    """

    map: TanhRNNMap
    weights: RecurrentWeights
    embeddings: Tensor
    condition_ids: Tensor
    names: list
    values: Optional[Tensor]
    dt: float

    @property
    def alpha(self) -> float:
        return self.map.alpha


def check_module(module) -> None:
    """Raise a TypeError naming the first attribute the dynamics analyses need that module lacks."""
    for attr in ("embeddings", "weights_for", "rnn", "initial_state"):
        if not hasattr(module, attr):
            raise TypeError(f"dynamics analyses need a JediModule-like model with '{attr}', "
                            f"got {type(module).__name__}")


def student_contexts(module, datamodule) -> StudentContexts:
    """Mean training embedding per condition present in ``datamodule.train_set`` and the weights."""
    check_module(module)
    train = datamodule.train_set
    device = next(module.parameters()).device
    with torch.no_grad():
        emb = module.embeddings.per_trial(train.conditions.to(device))  # (n_train, d)
        ids = torch.unique(train.conditions)
        means = torch.stack([emb[(train.conditions == k).to(device)].mean(0) for k in ids.tolist()])
        weights = module.weights_for(means)
    values = train.condition_values[ids] if train.condition_values is not None else None
    return StudentContexts(
        map=TanhRNNMap.from_weights(weights, module.rnn.alpha).to(dtype=torch.float64),
        weights=weights, embeddings=means.detach(), condition_ids=ids,
        names=[train.condition_names[k] for k in ids.tolist()], values=values, dt=float(module.rnn.dt))


def heldout_contexts(module, datamodule) -> Optional[StudentContexts]:
    """The student at each held-out condition, from the embeddings inferred for its trials during
    ``trainer.test`` (``module.inferred["heldout_cond"]``); None when there are none."""
    inferred = getattr(module, "inferred", {}).get("heldout_cond")
    if inferred is None or len(inferred.embeddings) == 0:
        return None
    names_all = datamodule.heldout_set.condition_names
    values_all = datamodule.heldout_set.condition_values
    device = next(module.parameters()).device
    ids = torch.unique(inferred.conditions)
    means = torch.stack([inferred.embeddings[inferred.conditions == k].mean(0) for k in ids.tolist()]).to(device)
    with torch.no_grad():
        weights = module.weights_for(means)
    return StudentContexts(
        map=TanhRNNMap.from_weights(weights, module.rnn.alpha).to(dtype=torch.float64),
        weights=weights, embeddings=means, condition_ids=ids, names=[names_all[k] for k in ids.tolist()],
        values=values_all[ids] if values_all is not None else None, dt=float(module.rnn.dt))


def student_initial_states(module, datamodule, ctx: StudentContexts, n_trials: int,
                           generator: torch.Generator) -> Tensor:
    """x_0 (C, n_trials, N) of ``n_trials`` training trials per condition (drawn with replacement)."""
    train = datamodule.train_set
    device = ctx.embeddings.device
    x0 = []
    for i, k in enumerate(ctx.condition_ids.tolist()):
        members = torch.nonzero(train.conditions == k).flatten()
        pick = members[torch.randint(len(members), (n_trials,), generator=generator)]
        data = train.data[pick].to(device)
        with torch.no_grad():
            x0.append(module.initial_state(ctx.embeddings[i].expand(n_trials, -1), data))
    return torch.stack(x0).to(torch.float64)
