"""Cut each reach trial at movement onset into a preparation and an execution segment (a TrialSet
transform, used as ``TrialDataModule(transform=...)``).

Every segment becomes its own sample (its own JEDI context) labelled (phase, target): condition
index p * C + c, name "<phase>/<target name>". Both segments have ``length`` bins: the last
``length`` bins before the event and the first ``length`` bins from it (default: the largest length
every trial allows). Time-aligned extras (``meta["time_extras"]``) and the PSTH are cut the same way;
per-trial extras are copied; extras that are neither (e.g. ``forward_spikes``) are dropped.
Added extras: ``phase`` (0 = prep, 1 = exec), ``source_trial`` (row in the input set), ``target``
(the input condition).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch

from jedi_rnn.data.trials import TrialSet

log = logging.getLogger(__name__)

PHASES = ("prep", "exec")


class SplitAtEvent:
    """TrialSet transform: (n, T, K) trials -> (2n, length, K) prep / exec segments.

    Args:
        event: per-trial extra holding the cut bin (default ``move_onset_bin``).
        length: bins per segment; None takes min over trials of (cut, T - cut).
        phases: names of the segment before and the segment from the event.
    """

    def __init__(self, event: str = "move_onset_bin", length: Optional[int] = None,
                 phases: Sequence[str] = PHASES):
        if len(phases) != 2:
            raise ValueError(f"data.transform.phases must name two segments (before, after), got {list(phases)}")
        self.event, self.length, self.phases = event, length, tuple(phases)

    def __call__(self, trials: TrialSet) -> TrialSet:
        if self.event not in trials.extras:
            raise ValueError(f"data.transform: the trials have no extra {self.event!r} (cut bin); "
                             f"available: {sorted(trials.extras)}")
        n, T, _ = trials.data.shape
        cut = trials.extras[self.event].long()
        if cut.shape != (n,) or int(cut.min()) < 1 or int(cut.max()) > T - 1:
            raise ValueError(f"data.transform: extra {self.event!r} must be one bin in [1, {T - 1}] per trial")
        longest = int(torch.minimum(cut, T - cut).min())
        L = self.length if self.length is not None else longest
        if not 1 <= L <= longest:
            raise ValueError(f"data.transform.length must be in [1, {longest}] for these trials, got {L}")
        rows = torch.arange(n)
        steps = torch.arange(L)
        idx = torch.stack([cut[:, None] - L + steps, cut[:, None] + steps])  # (2, n, L) bins of each segment
        time_keys = set(trials.meta.get("time_extras", []))

        def cut_time(x: torch.Tensor) -> torch.Tensor:  # (n, T, ...) -> (2n, L, ...)
            return torch.cat([x[rows[:, None], idx[p]] for p in range(2)])

        extras, dropped = {}, []
        for k, v in trials.extras.items():
            if k in time_keys:
                extras[k] = cut_time(v)
            elif v.ndim == 1:
                extras[k] = torch.cat([v, v])
            else:
                dropped.append(k)
        if dropped:
            log.info("data.transform: dropped extras %s (not time-aligned with the segments)", dropped)
        C = len(trials.condition_names)
        extras["phase"] = torch.repeat_interleave(torch.arange(2), n)
        extras["source_trial"] = torch.cat([rows, rows])
        extras["target"] = torch.cat([trials.conditions, trials.conditions])
        meta = dict(trials.meta)
        meta.update({"phases": list(self.phases), "segment_length": L, "n_base_conditions": C,
                     "time_extras": sorted(time_keys & set(extras))})
        if "psth" in meta:
            if int(cut.min()) == int(cut.max()):
                psth = torch.as_tensor(meta["psth"])
                c0 = int(cut[0])
                meta["psth"] = torch.cat([psth[:, c0 - L:c0], psth[:, c0:c0 + L]])  # (2C, L, K)
            else:
                log.info("data.transform: trials are not aligned on %s; the PSTH is dropped", self.event)
                del meta["psth"]
        values = trials.condition_values
        return TrialSet(
            data=cut_time(trials.data), conditions=extras["phase"] * C + extras["target"],
            condition_names=[f"{p}/{name}" for p in self.phases for name in trials.condition_names],
            dt=trials.dt, condition_values=None if values is None else torch.cat([values, values]),
            extras=extras, meta=meta).validate("data.transform (SplitAtEvent)")
