"""Recordings of a task-trained teacher as JEDI samples, with the teacher's fixed points as ground
truth (spec jedi.md §8f).

The teacher runs (without process noise by default) on freshly generated, seeded trials of its task;
its hidden rates tanh(x) are recorded and cut into constant-input segments (a MemoryPro epoch, a
flip-flop stretch between pulses), since the autonomous JEDI student cannot see inputs. Each segment
starts ``drop_steps`` after the input change, is cropped to ``segment_len`` steps (or padded with
NaN) and labelled by its condition. The teacher's fixed points are found per condition with
:func:`jedi_rnn.dynamics.fixed_points.find_fixed_points`, under the condition's constant input and from
the teacher states its segments visit, and stored in ``TrialSet.meta``:
``meta["teacher_fixed_points"]`` maps each condition to its index and input (JSON), and the arrays
``meta["teacher_fp_*"]`` hold the points of all conditions (read back per condition with
:func:`teacher_fixed_points`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Optional

import numpy as np
import torch

from jedi_rnn.data.tasks import Segment, TaskTrial, stack_trials, trial_rng
from jedi_rnn.data.trials import TrialDataModule, TrialSet
from jedi_rnn.dynamics.fixed_points import FinderOptions, find_fixed_points, sample_initial_states
from jedi_rnn.dynamics.maps import TanhRNNMap


def module_hash(module: torch.nn.Module) -> str:
    """Short hash of a module's state_dict (names, shapes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cut_segments(trials: list[TaskTrial], rates: np.ndarray, segment_len: int, drop_steps: int,
                 min_steps: int) -> dict:
    """Cut recorded rates (n, T, N) into constant-input segments.

    A segment [start, stop) of a trial keeps steps start + drop_steps .. stop - 1, cropped to
    ``segment_len`` and NaN-padded beyond its end; segments with fewer than ``min_steps`` kept steps
    are dropped. Raises if a segment's noise-free input is not constant. Returns dict with
    data (S, segment_len, N), labels (S,), inputs (S, n_in), trial (S,), start (S,), length (S,).
    """
    if not 1 <= min_steps <= segment_len:
        raise ValueError(f"data.recordings: need 1 <= min_steps <= segment_len, got {min_steps}, {segment_len}")
    data, labels, inputs, trial_idx, starts, lengths = [], [], [], [], [], []
    for i, tr in enumerate(trials):
        for seg in tr.segments:
            u = tr.clean_inputs[seg.start:seg.stop]
            if not np.all(u == u[0]):
                raise ValueError(f"trial {i}: segment {seg.label} [{seg.start}, {seg.stop}) has a varying input")
            a = seg.start + drop_steps
            b = min(seg.stop, a + segment_len)
            if b - a < min_steps:
                continue
            window = np.full((segment_len, rates.shape[2]), np.nan, np.float32)
            window[: b - a] = rates[i, a:b]
            data.append(window)
            labels.append(seg.label)
            inputs.append(u[0])
            trial_idx.append(i)
            starts.append(a)
            lengths.append(b - a)
    if not data:
        raise ValueError(f"data.recordings: no segment has {min_steps} steps after dropping {drop_steps}; "
                         "lower min_steps / drop_steps or record longer trials")
    return {"data": np.stack(data), "labels": labels, "inputs": np.stack(inputs).astype(np.float32),
            "trial": np.asarray(trial_idx), "start": np.asarray(starts), "length": np.asarray(lengths)}


def teacher_map(teacher, inputs: torch.Tensor) -> TanhRNNMap:
    """The teacher's noise-free step under G constant inputs (G, n_in), as a map on (G, K, N)."""
    with torch.no_grad():
        J = teacher.J.detach().double()
        drive = inputs.double() @ teacher.W_in.detach().double().T + teacher.b.detach().double()
        return TanhRNNMap(teacher.alpha, J=J.expand(inputs.shape[0], -1, -1), bias=drive)


def find_teacher_fixed_points(teacher, inputs: np.ndarray, states: list[np.ndarray], n_inits: int, init_noise: float,
                              options: FinderOptions, seed: int, n_eigenvalues: int) -> dict:
    """Fixed points of the teacher per condition, stacked over conditions.

    inputs (C, n_in) the conditions' constant inputs; states: per condition, teacher states x (M_c, N)
    to start from. Returns arrays over all P points: teacher_fp_x (P, N), teacher_fp_q (P,),
    teacher_fp_stable (P,), teacher_fp_eigenvalues (P, n_eigenvalues) complex (largest |lambda|
    first), teacher_fp_condition (P,).
    """
    gen = torch.Generator().manual_seed(seed)
    starts = torch.stack([
        sample_initial_states(torch.from_numpy(s).double()[None], n_inits, init_noise, gen)[0] for s in states])
    F = teacher_map(teacher, torch.from_numpy(inputs))
    contexts = find_fixed_points(F, starts, options).contexts
    return {"teacher_fp_x": np.concatenate([c.xstar.numpy() for c in contexts]),
            "teacher_fp_q": np.concatenate([c.q.numpy() for c in contexts]),
            "teacher_fp_stable": np.concatenate([c.stable.numpy() for c in contexts]),
            "teacher_fp_eigenvalues": np.concatenate([c.eigenvalues[:, :n_eigenvalues].numpy() for c in contexts]),
            "teacher_fp_condition": np.concatenate([np.full(c.n, k) for k, c in enumerate(contexts)])}


def teacher_fixed_points(meta: dict, condition: str) -> dict:
    """The teacher's fixed points of one condition, read from ``TrialSet.meta``: dict with x (n, N)
    states, rates = tanh(x), q (n,), stable (n,) bool, eigenvalues (n, k) complex, input (n_in,)."""
    info = meta.get("teacher_fixed_points")
    if info is None:
        raise KeyError("TrialSet.meta has no 'teacher_fixed_points' (not a task-teacher recording)")
    if condition not in info["conditions"]:
        raise KeyError(f"meta['teacher_fixed_points'] has no condition {condition!r}; has {sorted(info['conditions'])}")
    k = info["conditions"][condition]
    sel = np.asarray(meta["teacher_fp_condition"]) == k
    x = np.asarray(meta["teacher_fp_x"], np.float64)[sel]
    return {"x": x, "rates": np.tanh(x), "q": np.asarray(meta["teacher_fp_q"], np.float64)[sel],
            "stable": np.asarray(meta["teacher_fp_stable"], bool)[sel],
            "eigenvalues": np.asarray(meta["teacher_fp_eigenvalues"])[sel], "input": np.asarray(info["inputs"][k])}


class TaskTeacherRecordings:
    """TrialSet source: a trained teacher's rates on a task, cut into constant-input segments.

    Args:
        upstream: {``teacher_key``: trained ``TaskTeacherModule``} (from the stage glue).
        task: the task object (``MemoryPro`` / ``FlipFlop``) the teacher was trained on.
        n_trials: trials to record; condition-controlled tasks cycle through ``task.conditions()``.
        segment_len, drop_steps, min_steps: segment cutting (see ``cut_segments``).
        input_noise: input noise while recording (0: segments have exactly constant input).
        process_noise: teacher process noise while recording. obs_noise: Gaussian noise added to rates.
        fixed_points: finder settings: n_inits per input, init_noise, n_eigenvalues kept, and any
            ``FinderOptions`` field (e.g. max_iters, max_q, tol_unique).
        perturbation: optional perturbation trials, dict with ``n_trials`` (recorded after the
            ``n_trials`` task trials, conditions cycling the same way), ``epoch`` (e.g. ``memory``) and
            ``std``: ``offset`` steps (optional, default 0) after that epoch's onset the teacher's state
            x gets N(0, std²) noise per unit and the teacher then runs on unchanged (a
            photostimulation-style probe of the flow around the epoch's attractors, which slow dynamics
            never reach within the recordings). With an offset the epoch's segment is split at the
            kick into two segments of the same condition. Their segments are data like any other
            (``extras["perturbed"]`` marks them); the ground-truth fixed points are searched from the
            unperturbed trials' states only.
        seed: seeds trials, noise, perturbations and finder initial states.
    """

    def __init__(self, upstream: dict, task, n_trials: int = 64, segment_len: int = 20, drop_steps: int = 2,
                 min_steps: int = 10, input_noise: float = 0.0, process_noise: float = 0.0, obs_noise: float = 0.0,
                 fixed_points: Optional[dict] = None, perturbation: Optional[dict] = None, seed: int = 0,
                 teacher_key: str = "teacher"):
        if teacher_key not in (upstream or {}):
            raise ValueError(f"data.upstream must provide the trained teacher stage {teacher_key!r}, got {sorted(upstream or {})}")
        if n_trials < 1:
            raise ValueError(f"data.recordings.n_trials must be >= 1, got {n_trials}")
        self.teacher, self.task = upstream[teacher_key], task
        self.n_trials, self.segment_len, self.drop_steps, self.min_steps = n_trials, segment_len, drop_steps, min_steps
        self.input_noise, self.process_noise, self.obs_noise, self.seed = input_noise, process_noise, obs_noise, seed
        fp = {"n_inits": 256, "init_noise": 0.1, "n_eigenvalues": 10, "max_iters": 3000, **(fixed_points or {})}
        self.n_inits, self.init_noise = int(fp.pop("n_inits")), float(fp.pop("init_noise"))
        self.n_eigenvalues = int(fp.pop("n_eigenvalues"))
        self.finder = FinderOptions(**fp)
        self.perturbation = self._check_perturbation(perturbation, task)

    @staticmethod
    def _check_perturbation(perturbation: Optional[dict], task) -> Optional[dict]:
        if not perturbation:
            return None
        p = {"offset": 0, **perturbation}
        unknown = set(p) - {"n_trials", "epoch", "std", "offset"}
        if unknown or not {"n_trials", "epoch", "std"} <= set(p):
            raise ValueError(f"data.recordings.perturbation needs n_trials, epoch, std (and optionally offset); got {sorted(p)}")
        epochs = getattr(task, "epochs", ())
        if p["epoch"] not in epochs:
            raise ValueError(f"data.recordings.perturbation.epoch={p['epoch']!r} is not an epoch of "
                             f"{type(task).__name__} (epochs: {list(epochs)})")
        if int(p["n_trials"]) < 1 or float(p["std"]) <= 0 or int(p["offset"]) < 0:
            raise ValueError(f"data.recordings.perturbation needs n_trials >= 1, std > 0 and offset >= 0, got {p}")
        return {"n_trials": int(p["n_trials"]), "epoch": str(p["epoch"]), "std": float(p["std"]), "offset": int(p["offset"])}

    def _kicked(self, trial: TaskTrial) -> tuple[TaskTrial, int]:
        """The perturbation trial's kick step, and the trial with the kicked epoch's segment split there."""
        epoch, offset = self.perturbation["epoch"], self.perturbation["offset"]
        i, seg = next((i, g) for i, g in enumerate(trial.segments) if g.label.split("/")[0] == epoch)
        kick = seg.start + offset
        if kick >= seg.stop:
            raise ValueError(f"data.recordings.perturbation.offset={offset} steps is not inside the {epoch} epoch "
                             f"({seg.stop - seg.start} steps in a trial); lower the offset")
        if offset == 0:
            return trial, kick
        split = [Segment(seg.start, kick, seg.label), Segment(kick, seg.stop, seg.label)]
        return dataclasses.replace(trial, segments=trial.segments[:i] + split + trial.segments[i + 1:]), kick

    def cache_key(self) -> dict:
        """Everything the recordings depend on, including a hash of the teacher's weights."""
        task = {k: v for k, v in vars(self.task).items() if not k.startswith("_")}
        mine = {k: v for k, v in vars(self).items() if k not in ("teacher", "task", "finder")}
        if mine["perturbation"] is None:  # keys of recordings without perturbation trials stay as they were
            del mine["perturbation"]
        return {"task": type(self.task).__name__, "task_args": task, "recording": mine, "ground_truth": "per_condition",
                "finder": vars(self.finder), "teacher": module_hash(self.teacher)}

    def record(self) -> tuple[list[TaskTrial], np.ndarray]:
        """Generate the trials (task trials, then any perturbation trials) and run the teacher;
        returns trials and states x (n, T, N)."""
        conds = self.task.conditions()
        n_perturbed = self.perturbation["n_trials"] if self.perturbation else 0
        trials = [self.task.new_trial(trial_rng(self.seed, i), input_noise=self.input_noise, **conds[i % len(conds)])
                  for i in range(self.n_trials + n_perturbed)]
        inputs, _, _ = stack_trials(trials, max(t.n_steps for t in trials))
        teacher = self.teacher
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            dev = next(teacher.parameters()).device
            inputs = inputs.to(dev)
            states = teacher(inputs, noise_std=self.process_noise)  # (n, T, N); states[:, t] = x_{t+1}
            if n_perturbed:
                rng = torch.Generator().manual_seed(self.seed + 2)
                for i in range(self.n_trials, len(trials)):
                    trials[i], at = self._kicked(trials[i])
                    kick = self.perturbation["std"] * torch.randn(states.shape[2], generator=rng, dtype=states.dtype)
                    x0 = (states[i, at - 1] if at > 0 else torch.zeros_like(kick)) + kick.to(dev)
                    states[i, at:] = teacher(inputs[i:i + 1, at:], noise_std=self.process_noise, x0=x0[None])[0]
        teacher.train(was_training)
        return trials, states.cpu().numpy()

    def teacher_performance(self, trials: list[TaskTrial], states: np.ndarray) -> dict:
        """The task's ``performance`` of the teacher's outputs on the recorded trials, mean over trials
        (e.g. MemoryPro ``response_error_deg``): fixed points are ground truth only for a teacher that
        does its task on the trials it is recorded on."""
        with torch.no_grad():
            dev = next(self.teacher.parameters()).device
            outputs = self.teacher.outputs(torch.from_numpy(states).to(dev)).cpu().numpy()  # (n, T, n_out)
        scores = [self.task.performance(tr, outputs[i, : tr.n_steps]) for i, tr in enumerate(trials)]
        return {k: float(np.mean([sc[k] for sc in scores])) for k in scores[0]}

    def __call__(self) -> TrialSet:
        trials, states = self.record()
        rates = np.tanh(states)
        if self.obs_noise > 0:
            rng = np.random.default_rng([self.seed, 1])
            rates = (rates + self.obs_noise * rng.standard_normal(rates.shape)).astype(np.float32)
        seg = cut_segments(trials, rates, self.segment_len, self.drop_steps, self.min_steps)
        names = sorted(set(seg["labels"]))
        conditions = np.asarray([names.index(lab) for lab in seg["labels"]])
        # ground truth per condition: the teacher's fixed points under the condition's input, searched
        # from the states the condition's segments visit (the student's search starts there too), so a
        # condition is compared with the attractor its own trajectories approach, not with every
        # attractor that shares its input (all flip-flop patterns, all MemoryPro memory directions)
        cond_inputs, cond_states = [], []
        perturbed = seg["trial"] >= self.n_trials
        for c, name in enumerate(names):
            sel = np.flatnonzero((conditions == c) & ~perturbed)
            if len(sel) == 0:
                raise ValueError(f"condition {name!r} has no segment in the {self.n_trials} unperturbed trials; "
                                 "raise data.recordings.n_trials")
            us = np.unique(seg["inputs"][sel], axis=0)
            if len(us) != 1:
                raise ValueError(f"condition {name!r} has {len(us)} different constant inputs; labels must fix the input")
            cond_inputs.append(us[0])
            cond_states.append(np.concatenate([states[seg["trial"][i], seg["start"][i]:seg["start"][i] + seg["length"][i]]
                                               for i in sel]))
        arrays = find_teacher_fixed_points(self.teacher, np.stack(cond_inputs), cond_states, self.n_inits,
                                           self.init_noise, self.finder, self.seed, self.n_eigenvalues)
        performance = self.teacher_performance(trials[: self.n_trials], states[: self.n_trials])  # task trials only
        meta = {"teacher_fixed_points": {"conditions": {name: c for c, name in enumerate(names)},
                                         "inputs": np.stack(cond_inputs).tolist(), "alpha": float(self.teacher.alpha)},
                "task": type(self.task).__name__, "teacher_performance": performance, **arrays}
        extras = {k: torch.from_numpy(np.asarray(seg[k])) for k in ("inputs", "trial", "start", "length")}
        extras["perturbed"] = torch.from_numpy(perturbed)
        return TrialSet(data=torch.from_numpy(seg["data"]), conditions=torch.from_numpy(conditions).long(),
                        condition_names=names, dt=float(self.task.dt), extras=extras, meta=meta)


class TaskRecordingsDataModule(TrialDataModule):
    """``TrialDataModule`` over a teacher's recordings; takes ``upstream`` from the stage glue.

    Args:
        upstream: trained stages by name (needs the teacher).
        recordings: partial ``TaskTeacherRecordings`` (everything but ``upstream``).
        **kwargs: ``TrialDataModule`` arguments (batch_size, split, heldout_conditions, cache_dir, ...).
    """

    def __init__(self, upstream: dict, recordings: Callable[..., TaskTeacherRecordings], **kwargs):
        super().__init__(source=recordings(upstream=upstream), **kwargs)
