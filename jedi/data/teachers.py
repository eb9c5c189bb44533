"""Synthetic teacher RNNs (spec jedi.md §8e): a random-bulk plus rank-5 rate network driven by
W_ext u(t), whose rates are the recordings JEDI fits.

    J_T = g chi / sqrt(N) + (s / N) sum_r m_r n_r^T,    tau dx/dt = -x + J_T tanh(x) + W_ext u(t)

Euler-integrated with the update of ``jedi_rnn.dynamics.rate_rnn`` (alpha = dt / tau).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from jedi_rnn.data.trials import TrialSet
from jedi_rnn.dynamics.rate_rnn import RecurrentWeights, unroll

log = logging.getLogger(__name__)

TASK_FAMILIES = ("sine", "square", "sawtooth", "two_tone", "pulse")


def _waveform(family: str, t: np.ndarray, freq: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Input waveforms (n, T) in [-1, 1] for per-trial frequencies and phases (n, 1)."""
    theta = 2 * np.pi * freq * t + phase
    if family == "sine":
        return np.sin(theta)
    if family == "square":
        return np.sign(np.sin(theta))
    if family == "sawtooth":
        return 2.0 * ((theta / (2 * np.pi)) % 1.0) - 1.0
    if family == "two_tone":
        return 0.5 * (np.sin(theta) + np.sin(2.7 * theta))
    if family == "pulse":
        return np.where((theta / (2 * np.pi)) % 1.0 < 0.15, 1.0, -0.3)
    raise ValueError(f"data.source.tasks: unknown input family {family!r}; valid: {list(TASK_FAMILIES)}")


@dataclass
class SyntheticTeacher:
    """Seeded simulator of the multi-frequency or multi-task teacher family.

    ``family="multifreq"``: u = A sin(2 pi f t + phi), the frequency f (Hz) is the condition.
    ``family="multitask"``: each input family in ``tasks`` is a condition with its own input channel
    (or one shared channel), a random frequency in ``task_frequency`` Hz and a random phase per trial.
    With ``task_frequencies`` (a list of Hz) every (family, frequency) pair is a condition, named
    ``"<family>@<f>Hz"`` with the frequency as its value, so a held-out pair tests whether a model
    composes a family's waveform with a frequency it has only seen driving other families.
    """

    family: str = "multifreq"
    n_units: int = 200
    g: float = 1.8
    rank: int = 5
    structure: float = 1.0
    dt: float = 0.01
    tau: float = 0.05
    warmup_s: float = 1.0
    duration_s: float = 2.0
    # 1.0 (the spec's start) entrains the g=1.8 bulk poorly; see configs/data/jedi/multifreq.yaml
    amplitude: float = 8.0
    noise_std: float = 0.0
    obs_noise: float = 0.02
    n_observed: int | None = None
    trials_per_condition: int = 40
    frequencies: Sequence[float] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    tasks: Sequence[str] = TASK_FAMILIES
    task_frequency: Sequence[float] = (1.0, 10.0)  # per-trial frequency range of the multi-task inputs (Hz)
    task_frequencies: Sequence[float] | None = None  # fixed frequencies (Hz) crossed with the tasks
    shared_channel: bool = False
    seed: int = 0
    min_reliability: float = 0.9
    reliability: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.family not in ("multifreq", "multitask"):
            raise ValueError(f"data.source.family must be 'multifreq' or 'multitask', got {self.family!r}")
        if self.n_observed is not None and not 0 < self.n_observed <= self.n_units:
            raise ValueError(f"data.source.n_observed must be in [1, n_units={self.n_units}], got {self.n_observed}")
        if len(self.task_frequency) != 2 or not 0 < self.task_frequency[0] <= self.task_frequency[1]:
            raise ValueError(f"data.source.task_frequency must be [low, high] Hz with 0 < low <= high, got {self.task_frequency}")
        self.frequencies, self.tasks = list(self.frequencies), list(self.tasks)
        self.task_frequency = [float(f) for f in self.task_frequency]
        if self.task_frequencies is not None:
            if self.family != "multitask" or not len(self.task_frequencies) or min(self.task_frequencies) <= 0:
                raise ValueError("data.source.task_frequencies must be a non-empty list of positive Hz and needs "
                                 f"family=multitask, got {self.task_frequencies} with family={self.family!r}")
            self.task_frequencies = [float(f) for f in self.task_frequencies]

    def cache_key(self) -> dict:
        key = asdict(self)
        key.pop("reliability")
        return key

    def weights(self) -> dict[str, np.ndarray]:
        """Teacher connectivity J_T (N, N) and input weights W_ext (N, d_in)."""
        rng = np.random.default_rng(self.seed)
        N = self.n_units
        chi = rng.standard_normal((N, N))
        m, n = rng.standard_normal((N, self.rank)), rng.standard_normal((N, self.rank))
        J = self.g * chi / math.sqrt(N) + self.structure * m @ n.T / N
        d_in = 1 if self.family == "multifreq" or self.shared_channel else len(self.tasks)
        return {"J": J, "W_ext": rng.standard_normal((N, d_in))}

    def _inputs(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
        """Inputs (n, T_total, d_in), condition labels (n,), names, values."""
        k = self.trials_per_condition
        T = int(round((self.warmup_s + self.duration_s) / self.dt))
        t = np.arange(T)[None, :] * self.dt
        if self.family == "multifreq":
            freqs = np.repeat(np.asarray(self.frequencies, float), k)[:, None]
            phase = rng.uniform(0, 2 * np.pi, (len(freqs), 1))
            u = (self.amplitude * np.sin(2 * np.pi * freqs * t + phase))[..., None]
            labels = np.repeat(np.arange(len(self.frequencies)), k)
            names = [f"{f:g}Hz" for f in self.frequencies]
            return u, labels, names, np.asarray(self.frequencies, float)
        # one condition per task, or per (task, fixed frequency) pair: (task index, frequency or None)
        pairs = [(i, f) for i in range(len(self.tasks)) for f in (self.task_frequencies or [None])]
        u = np.zeros((len(pairs) * k, T, 1 if self.shared_channel else len(self.tasks)))
        for c, (i, f) in enumerate(pairs):
            freq = np.full((k, 1), f) if f is not None else rng.uniform(*self.task_frequency, (k, 1))
            phase = rng.uniform(0, 2 * np.pi, (k, 1))
            u[c * k:(c + 1) * k, :, 0 if self.shared_channel else i] = self.amplitude * _waveform(self.tasks[i], t, freq, phase)
        labels = np.repeat(np.arange(len(pairs)), k)
        if self.task_frequencies is None:
            return u, labels, list(self.tasks), None
        names = [f"{self.tasks[i]}@{f:g}Hz" for i, f in pairs]
        return u, labels, names, np.array([f for _, f in pairs])

    def simulate(self, u: np.ndarray, x0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Euler-integrate the teacher; returns states x (n, T, N)."""
        w = self.weights()
        J, W = torch.from_numpy(w["J"]), torch.from_numpy(w["W_ext"])
        drive = torch.from_numpy(u) @ W.T  # (n, T, d_in) -> (n, T, N)
        n, T = u.shape[:2]
        noise = None
        if self.noise_std > 0:  # drawn step by step in time order: (T, n, N) -> (n, T, N)
            noise = torch.from_numpy(self.noise_std * rng.standard_normal((T, n, self.n_units))).transpose(0, 1)
        xs = unroll(RecurrentWeights(base=J), torch.from_numpy(x0), self.dt / self.tau, T, drive=drive, noise=noise)
        return xs[:, :-1].numpy()  # x_0..x_{T-1}

    def __call__(self) -> TrialSet:
        rng = np.random.default_rng(self.seed + 1)
        u, labels, names, values = self._inputs(rng)
        n = u.shape[0]
        # two runs of every trial from different initial states measure how reliably the input
        # entrains the chaotic bulk (an autonomous student can only fit reliable responses); the
        # check is per condition: a fast input is low-pass filtered by tau and entrains least
        x0 = rng.standard_normal((2 * n, self.n_units))
        xs = self.simulate(np.concatenate([u, u]), x0, rng)
        warm = int(round(self.warmup_s / self.dt))
        rates = np.tanh(xs[:, warm:])  # (2n, T, N)
        a, b = rates[:n].reshape(n, -1), rates[n:].reshape(n, -1)  # (n, T·N) per run
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        corr = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
        per_condition = {names[k]: float(np.median(corr[labels == k])) for k in np.unique(labels)}
        self.reliability = {"median": float(np.median(corr)), "min": float(corr.min()),
                            "worst_condition": min(per_condition.values()), "per_condition": per_condition}
        log.info("teacher trial reliability: median %.3f, min %.3f, worst condition %.3f",
                 self.reliability["median"], self.reliability["min"], self.reliability["worst_condition"])
        unreliable = [k for k, v in per_condition.items() if v < self.min_reliability]
        if unreliable:
            log.warning("teacher trials of %s are unreliable (median correlation < %.2f between runs from different "
                        "initial states): raise data.source.amplitude", unreliable, self.min_reliability)
        rates = rates[:n]
        observed = np.arange(self.n_units)
        if self.n_observed is not None:
            observed = np.sort(rng.choice(self.n_units, self.n_observed, replace=False))
        data = rates[:, :, observed] + self.obs_noise * rng.standard_normal((n, rates.shape[1], len(observed)))
        w = self.weights()
        return TrialSet(
            data=torch.from_numpy(data).float(), conditions=torch.from_numpy(labels).long(),
            condition_names=names, dt=self.dt,
            condition_values=torch.from_numpy(values).float() if values is not None else None,
            extras={"latents": torch.from_numpy(rates).float(), "inputs": torch.from_numpy(u[:, warm:]).float()},
            meta={"teacher_J": w["J"], "teacher_W_ext": w["W_ext"], "observed_units": observed,
                  "reliability_median": self.reliability["median"],
                  "reliability_worst_condition": self.reliability["worst_condition"], "label": f"synthetic teacher ({self.family})"})
