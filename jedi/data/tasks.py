"""Seeded trial generators for task-trained teacher RNNs (spec jedi.md §8f) and the datamodule that
trains a teacher on them.

Two tasks, each with a neurogym-like ``new_trial(rng, **condition)`` that returns one
condition-controlled, start-aligned :class:`TaskTrial`:

- :class:`MemoryPro` (CtDB / Driscoll et al.): inputs (fixation, cos θ, sin θ), targets (fixation,
  cos θ, sin θ); epochs context, stimulus, memory, response with per-trial random durations.
- :class:`FlipFlop` (3-bit flip-flop, CtDB NBFF): ±1 input pulses per bit; each target bit holds the
  sign of its last pulse.

Every trial carries its constant-input segments (start, stop, label) computed from the noise-free
inputs, which :mod:`jedi_rnn.data.task_recordings` cuts into JEDI samples. Trials are seeded one by one
(``trial_rng(seed, index)``), so trial i is the same whatever else is generated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class Segment:
    """A stretch [start, stop) of time steps with constant noise-free input and its condition label."""

    start: int
    stop: int
    label: str


@dataclass
class TaskTrial:
    """One trial: ``inputs`` (T, n_in) with noise, ``clean_inputs`` (T, n_in) noise-free, ``targets``
    (T, n_out), ``mask`` (T, n_out) loss weights in {0, 1}, constant-input ``segments`` and ``info``."""

    inputs: np.ndarray
    clean_inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    segments: list[Segment]
    info: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return self.inputs.shape[0]


def trial_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of trial ``index`` of a set seeded with ``seed`` (independent streams)."""
    return np.random.default_rng([int(seed), int(index)])


def _add_noise(clean: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    if std < 0:
        raise ValueError(f"task input_noise must be >= 0, got {std}")
    if std == 0:
        return clean.copy()
    return (clean + std * rng.standard_normal(clean.shape)).astype(np.float32)


def direction_label(theta: float) -> str:
    """Condition label of a direction, in whole degrees (e.g. 'theta=045')."""
    return f"theta={int(round(math.degrees(theta))) % 360:03d}"


class MemoryPro:
    """MemoryPro-style working-memory task at ``dt`` seconds per step.

    Epochs (durations drawn uniformly per trial, in ms, converted to whole steps): context (fixation
    on, no stimulus), stimulus (fixation on, cos θ / sin θ on), memory (fixation on), response
    (fixation off). Targets: fixation 1 until the response epoch and 0 in it; (cos θ, sin θ) in the
    response epoch, 0 before. The first ``response_grace_ms`` of the response epoch are not scored.
    Training draws θ ~ U(0, 2π), or with ``train_directions=k`` one of k equally spaced θ (a teacher
    with k point attractors instead of a drifting ring); recordings pass one of ``n_directions``
    equally spaced θ.
    """

    epochs = ("context", "stimulus", "memory", "response")
    n_inputs = 3
    n_outputs = 3

    def __init__(self, dt: float = 0.02, input_noise: float = 0.3,
                 context_ms: Sequence[float] = (300, 700), stimulus_ms: Sequence[float] = (200, 1600),
                 memory_ms: Sequence[float] = (200, 1600), response_ms: Sequence[float] = (300, 700),
                 response_grace_ms: float = 100.0, n_directions: int = 8,
                 train_directions: Optional[int] = None):
        if dt <= 0:
            raise ValueError(f"task.dt must be > 0, got {dt}")
        if train_directions is not None and train_directions < 1:
            raise ValueError(f"task.train_directions must be null (continuous θ) or >= 1, got {train_directions}")
        self.dt, self.input_noise, self.n_directions = dt, input_noise, n_directions
        self.train_directions = train_directions
        self.ranges = {}
        for name, ms in zip(self.epochs, (context_ms, stimulus_ms, memory_ms, response_ms)):
            lo, hi = (int(round(v / 1000.0 / dt)) for v in ms)
            if not 1 <= lo <= hi:
                raise ValueError(f"task.{name}_ms must be an increasing pair >= one step ({dt * 1000:g} ms), got {list(ms)}")
            self.ranges[name] = (lo, hi)
        self.grace = int(round(response_grace_ms / 1000.0 / dt))
        if self.grace >= self.ranges["response"][0]:
            raise ValueError(f"task.response_grace_ms={response_grace_ms} must be shorter than the shortest response epoch")

    @property
    def max_steps(self) -> int:
        return sum(hi for _, hi in self.ranges.values())

    def directions(self) -> np.ndarray:
        """The recording directions, equally spaced from 0 (n_directions,)."""
        return 2 * np.pi * np.arange(self.n_directions) / self.n_directions

    def conditions(self) -> list[dict]:
        """One keyword set per recording condition (for ``new_trial``)."""
        return [{"theta": float(t)} for t in self.directions()]

    def new_trial(self, rng: np.random.Generator, theta: Optional[float] = None,
                  durations: Optional[dict] = None, input_noise: Optional[float] = None) -> TaskTrial:
        """A trial with direction ``theta`` (random if None) and epoch ``durations`` in steps."""
        if theta is None and self.train_directions is None:
            theta = float(rng.uniform(0.0, 2 * np.pi))
        elif theta is None:
            theta = 2 * np.pi * int(rng.integers(self.train_directions)) / self.train_directions
        steps = {}
        for name in self.epochs:  # always draw, so forcing one duration leaves the others unchanged
            lo, hi = self.ranges[name]
            steps[name] = int(rng.integers(lo, hi + 1))
        steps.update(durations or {})
        bounds = np.cumsum([0] + [steps[e] for e in self.epochs])
        T = int(bounds[-1])
        clean = np.zeros((T, 3), np.float32)
        targets = np.zeros((T, 3), np.float32)
        mask = np.ones((T, 3), np.float32)
        c0, s0, m0, r0 = (int(b) for b in bounds[:4])
        clean[:r0, 0] = 1.0
        clean[s0:m0, 1:] = (math.cos(theta), math.sin(theta))
        targets[:r0, 0] = 1.0
        targets[r0:, 1:] = (math.cos(theta), math.sin(theta))
        mask[r0:r0 + self.grace] = 0.0
        direction = direction_label(theta)
        segments = [Segment(int(a), int(b), e if e == "context" else f"{e}/{direction}")
                    for e, a, b in zip(self.epochs, bounds[:-1], bounds[1:])]
        noise = self.input_noise if input_noise is None else input_noise
        return TaskTrial(_add_noise(clean, noise, rng), clean, targets, mask, segments,
                         {"theta": theta, "steps": steps})

    @staticmethod
    def performance(trial: TaskTrial, outputs: np.ndarray) -> dict:
        """How well outputs (T, 3) do the trial: ``response_error_deg``, the absolute angle between
        the mean scored response output (cos, sin) and the trial's direction, in degrees."""
        scored = trial.mask[:, 1] > 0
        scored[: trial.segments[-1].start] = False  # the response epoch only
        c, s = outputs[scored, 1].mean(), outputs[scored, 2].mean()
        error = math.degrees(math.atan2(s, c) - trial.info["theta"])
        return {"response_error_deg": abs((error + 180.0) % 360.0 - 180.0)}


def pattern_label(bits: np.ndarray) -> str:
    """Condition label of a held bit pattern, e.g. [1, -1, 1] -> '+-+'."""
    return "".join("+" if b > 0 else "-" for b in bits)


class FlipFlop:
    """N-bit flip-flop (default 3 bits, 500 steps).

    Each step, each bit receives a pulse with probability ``switch_prob`` and a random sign; with
    ``pulse_at_start`` every bit is pulsed at step 0 (as in fixed-point-finder's example), so the
    target is defined from the start. Target bit k = sign of bit k's last pulse (0 before any pulse,
    not scored). The ``blind_steps`` after a pulse on bit k (and the pulse step) are not scored on
    bit k. Constant-input segments are the maximal stretches without an active pulse (label: the held
    pattern). A pulse lasts ``pulse_steps`` steps; ``dt`` (s per step) only labels recordings.
    """

    def __init__(self, n_bits: int = 3, n_steps: int = 500, switch_prob: float = 0.01, input_noise: float = 0.15,
                 blind_steps: int = 4, pulse_at_start: bool = True, pulse_steps: int = 1, dt: float = 0.02):
        if not 0 <= switch_prob <= 1:
            raise ValueError(f"task.switch_prob must be in [0, 1], got {switch_prob}")
        if n_bits < 1 or n_steps < 2 or pulse_steps < 1:
            raise ValueError(f"task.n_bits, task.pulse_steps must be >= 1 and task.n_steps >= 2, got {n_bits}, {pulse_steps}, {n_steps}")
        self.n_bits, self.n_steps, self.switch_prob = n_bits, n_steps, switch_prob
        self.input_noise, self.blind_steps, self.pulse_at_start = input_noise, blind_steps, pulse_at_start
        self.pulse_steps, self.dt = pulse_steps, dt

    @property
    def n_inputs(self) -> int:
        return self.n_bits

    @property
    def n_outputs(self) -> int:
        return self.n_bits

    @property
    def max_steps(self) -> int:
        return self.n_steps

    def conditions(self) -> list[dict]:
        """Recording trials are not condition-controlled (patterns arise from the pulses)."""
        return [{}]

    def new_trial(self, rng: np.random.Generator, input_noise: Optional[float] = None) -> TaskTrial:
        T, K = self.n_steps, self.n_bits
        pulses = rng.random((T, K)) < self.switch_prob
        signs = np.where(rng.random((T, K)) < 0.5, -1.0, 1.0)
        if self.pulse_at_start:
            pulses[0] = True
        clean = np.zeros((T, K), np.float32)
        for lag in reversed(range(self.pulse_steps)):  # a pulse lasts pulse_steps steps; the latest onset wins
            clean[lag:] = np.where(pulses[: T - lag], signs[: T - lag], clean[lag:])
        targets = np.zeros((T, K), np.float32)
        mask = np.ones((T, K), np.float32)
        held = np.zeros(K, np.float32)
        seen = np.zeros(K, bool)
        blind_left = np.zeros(K, int)
        for t in range(T):
            hit = pulses[t]
            held[hit] = signs[t, hit]
            seen |= hit
            blind_left[hit] = self.blind_steps + 1
            targets[t] = held
            mask[t] = (seen & (blind_left == 0)).astype(np.float32)
            blind_left = np.maximum(blind_left - 1, 0)
        segments = []
        quiet = ~(clean != 0).any(1)  # steps with zero input on every bit
        edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):  # maximal quiet runs [a, b)
            if pulses[:a].any(0).all():  # every bit pulsed before: the held pattern is defined
                segments.append(Segment(int(a), int(b), pattern_label(targets[a])))
        noise = self.input_noise if input_noise is None else input_noise
        return TaskTrial(_add_noise(clean, noise, rng), clean, targets, mask, segments, {"pulses": pulses})

    @staticmethod
    def performance(trial: TaskTrial, outputs: np.ndarray) -> dict:
        """How well outputs (T, n_bits) do the trial: ``bit_accuracy``, the fraction of scored
        (step, bit) entries whose output sign is the held bit."""
        scored = trial.mask > 0
        return {"bit_accuracy": float((np.sign(outputs[scored]) == trial.targets[scored]).mean())}


def stack_trials(trials: Sequence[TaskTrial], n_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad trials to ``n_steps`` (inputs and targets 0, mask 0 past the end); returns float32 tensors
    inputs (n, T, n_in), targets (n, T, n_out), mask (n, T, n_out)."""
    n = len(trials)
    n_in, n_out = trials[0].inputs.shape[1], trials[0].targets.shape[1]
    u = np.zeros((n, n_steps, n_in), np.float32)
    y = np.zeros((n, n_steps, n_out), np.float32)
    m = np.zeros((n, n_steps, n_out), np.float32)
    for i, tr in enumerate(trials):
        if tr.n_steps > n_steps:
            raise ValueError(f"trial {i} has {tr.n_steps} steps, more than the padded length {n_steps}")
        u[i, : tr.n_steps], y[i, : tr.n_steps], m[i, : tr.n_steps] = tr.inputs, tr.targets, tr.mask
    return torch.from_numpy(u), torch.from_numpy(y), torch.from_numpy(m)


class TaskDataModule(pl.LightningDataModule):
    """Trials of a task for training a teacher RNN: batches of (inputs, targets, mask), each
    (B, T, ·), padded to the task's maximal length. Train and val trials come from disjoint seeded
    streams (``seed`` and ``seed + 1``), each trial seeded by its index.

    ``dims`` = {"n_inputs", "n_outputs"} sizes the teacher.
    """

    def __init__(self, task, n_train: int = 2000, n_val: int = 200, batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        if n_train < 1 or n_val < 1 or batch_size < 1:
            raise ValueError(f"data.n_train, data.n_val, data.batch_size must be >= 1, got {n_train}, {n_val}, {batch_size}")
        self.task, self.n_train, self.n_val = task, n_train, n_val
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_set: Optional[TensorDataset] = None
        self.val_set: Optional[TensorDataset] = None

    @property
    def dims(self) -> dict:
        return {"n_inputs": self.task.n_inputs, "n_outputs": self.task.n_outputs}

    def make_trials(self, n: int, seed: int) -> TensorDataset:
        trials = [self.task.new_trial(trial_rng(seed, i)) for i in range(n)]
        return TensorDataset(*stack_trials(trials, self.task.max_steps))

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is None:
            self.train_set = self.make_trials(self.n_train, self.seed)
            self.val_set = self.make_trials(self.n_val, self.seed + 1)

    def _loader(self, ds: TensorDataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(self.seed), num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)
