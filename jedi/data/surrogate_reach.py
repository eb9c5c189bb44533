"""An embedded SURROGATE centre-out reach dataset (not a recording): Poisson spikes from a
rotational-dynamics teacher, in the same TrialSet form as the real loaders.

Latent z in R^4 = two planes, one per hand axis. Trial window [-pre, +post] s around movement onset:
- baseline (before target onset): z relaxes to 0;
- preparation (target onset .. movement onset): z relaxes to the target's preparatory state
  z*_theta = a (cos theta, 0, sin theta, 0) with time constant tau_prep (discrete eigenvalue
  1 - dt/tau_prep, inside the unit circle);
- execution (from movement onset): each plane rotates at omega = pi / movement_s with per-step
  damping rho (eigenvalues rho e^{+-i omega dt}, near the unit circle), so
  z(t) = a rho^t (cos th cos wt, cos th sin wt, sin th cos wt, sin th sin wt) and the hand velocity
  v = v_max (z_2, z_4) / a = v_max rho^t sin(wt) (cos th, sin th) is a linear readout of z.
Small process noise (std ``latent_noise`` per step) makes single trials differ. Rates are
lambda_k = dt exp(b_k + C_k . z) expected counts per bin, spikes ~ Poisson(lambda).
Everything is labelled "surrogate": condition names, meta["label"], and the log line.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from jedi_rnn.data.reach_preprocess import build_reach_trialset, heldout_order
from jedi_rnn.data.trials import TrialSet

log = logging.getLogger(__name__)

LABEL = "surrogate"
# bump when the generator's output changes, so cached sets of older code are not reused
GENERATOR_VERSION = 2


@dataclass
class SurrogateReach:
    """Seeded surrogate reach-task spiking data (see the module docstring for the generator)."""

    n_neurons: int = 40
    n_heldout: int = 10
    n_targets: int = 8
    trials_per_target: int = 20
    dt: float = 0.01
    pre_s: float = 0.75
    post_s: float = 0.75
    forward_s: float = 0.2
    target_on_s: tuple = (-0.7, -0.45)   # range of target onset relative to movement onset
    tau_prep: float = 0.1
    movement_s: float = 0.75
    damping: float = 0.998
    amplitude: float = 1.5
    v_max: float = 30.0                  # peak hand speed, cm/s
    base_rate_hz: tuple = (5.0, 30.0)
    tuning_std: float = 0.5
    latent_noise: float = 0.01
    output: str = "counts"
    smooth_sigma: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("pre_s", "post_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.source.{name} must be > 0, got {getattr(self, name)}")
        self.target_on_s = tuple(self.target_on_s)
        self.base_rate_hz = tuple(self.base_rate_hz)
        if not -self.pre_s <= self.target_on_s[0] <= self.target_on_s[1] < 0:
            raise ValueError(f"data.source.target_on_s must lie in [-pre_s, 0), got {list(self.target_on_s)}")

    def cache_key(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}

    @property
    def n_pre(self) -> int:
        return int(round(self.pre_s / self.dt))

    def teacher_eigenvalues(self) -> np.ndarray:
        """Eigenvalues (2, 4) of the latent update per phase: row 0 preparation (1 - dt/tau_prep, 4-fold),
        row 1 execution (damping x e^{+-i omega dt} in both planes)."""
        w = np.pi / self.movement_s * self.dt
        prep = np.full(4, 1.0 - self.dt / self.tau_prep, dtype=np.complex128)
        rot = self.damping * np.exp(1j * w * np.array([1, -1, 1, -1]))
        return np.stack([prep, rot])

    def latent_trajectories(self, theta: np.ndarray, on_bin: np.ndarray, n_bins: int,
                            rng: np.random.Generator) -> np.ndarray:
        """Latents (n, n_bins, 4) for target angles theta (n,) and target-onset bins (n,)."""
        n = len(theta)
        a, dt = self.amplitude, self.dt
        target = a * np.stack([np.cos(theta), np.zeros(n), np.sin(theta), np.zeros(n)], 1)  # (n, 4)
        w = np.pi / self.movement_s * dt
        rot = self.damping * np.array([[np.cos(w), -np.sin(w)], [np.sin(w), np.cos(w)]])
        z = np.zeros((n, 4))
        out = np.empty((n, n_bins, 4))
        for t in range(n_bins):
            out[:, t] = z
            noise = self.latent_noise * rng.standard_normal((n, 4))
            if t + 1 < self.n_pre:  # relax toward 0 (baseline), then toward the target's state
                goal = np.where((t + 1 >= on_bin)[:, None], target, 0.0)
                z = z + dt / self.tau_prep * (goal - z) + noise
            else:  # execution: rotation in both planes
                z = np.concatenate([z[:, :2] @ rot.T, z[:, 2:] @ rot.T], 1) + noise
        return out

    def __call__(self) -> TrialSet:
        rng = np.random.default_rng(self.seed)
        n_post = int(round(self.post_s / self.dt))
        n_fwd = int(round(self.forward_s / self.dt))
        T = self.n_pre + n_post
        targets = np.arange(self.n_targets)
        cond = np.repeat(targets, self.trials_per_target)
        n = len(cond)
        theta = 2 * np.pi * cond / self.n_targets
        lo, hi = (int(round((self.pre_s + s) / self.dt)) for s in self.target_on_s)
        on_bin = rng.integers(lo, hi + 1, size=n)
        z = self.latent_trajectories(theta, on_bin, T + n_fwd, rng)
        log_base = np.log(rng.uniform(*self.base_rate_hz, size=self.n_neurons))
        C = self.tuning_std * rng.standard_normal((self.n_neurons, 4))
        rates = self.dt * np.exp(log_base + z @ C.T)  # (n, T + n_fwd, K) expected counts per bin
        spikes = rng.poisson(rates).astype(np.float64)
        velocity = self.v_max / self.amplitude * z[:, :T, [1, 3]]
        order, n_out = heldout_order(self.n_neurons, None, self.n_heldout, self.seed + 1)
        degrees = (360.0 * targets / self.n_targets).round().astype(int)
        names = [f"{LABEL}_target_{d:03d}deg" for d in degrees]
        log.info("%s reach data: %d trials x %d bins x %d neurons (%d held out), %d targets -- "
                 "a SURROGATE, not a recording", LABEL, n, T, self.n_neurons, n_out, self.n_targets)
        return build_reach_trialset(
            spikes[:, :T], cond, names, self.dt, order, n_out, self.output, self.smooth_sigma,
            condition_values=degrees.astype(np.float64),
            time_extras={"velocity": velocity, "latents": z[:, :T], "true_rates": rates[:, :T][:, :, order]},
            trial_extras={"move_onset_bin": np.full(n, self.n_pre), "target_on_bin": on_bin,
                          "forward_spikes": spikes[:, T:][:, :, order],
                          "target_angle": theta},
            meta={"label": LABEL, "velocity_lag_s": 0.0, "tuning": C[order], "log_base_rate": log_base[order],
                  "psth_source": "true rates averaged per condition", "teacher_eigs": self.teacher_eigenvalues()},
            psth=_condition_means(rates[:, :T], cond, self.n_targets), origin=f"{LABEL} reach generator")


def _condition_means(x: np.ndarray, cond: np.ndarray, n_conditions: int) -> np.ndarray:
    """Mean over the trials of each condition: (n, T, K) -> (C, T, K)."""
    return np.stack([x[cond == c].mean(0) for c in range(n_conditions)])
