"""Out-of-core trials: peak RSS and train-step time of JEDI on an HDF5 recordings file of 1k, 10k and
100k trials (same model, same batch), each size in a fresh subprocess that reads its own peak RSS;
the 100k file loaded into memory (data.source.lazy=false) is the reference of what laziness saves.
Then multi-session JEDI: step time over 4 sessions of different neuron counts vs 1 session of the same
total trials and mean neuron count.

Runs the user's path: configs composed as `data=jedi/recordings` / `data=jedi/sessions`, built by
experiments.glue.build, trained by a Lightning Trainer, with the settings for many trials (``SCALE``);
a step is the time between consecutive train-batch ends (one loader worker reads while the model
trains). Memory is the peak, sampled every 0.25 s from outside, of the training process's RSS plus
its loader worker's private pages (/proc/<pid>/smaps_rollup): the forked worker shares most of its
pages with its parent, and summed RSS would count those twice (proportional set size would instead
depend on what else runs: it splits the torch library's pages with every other process mapping them).
The training process's own peak RSS (exact, from the kernel) is reported beside it.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (1_000, 10_000, 100_000)
T, K, BATCH, LATENT = 40, 24, 64, 64
SESSION_NEURONS = (16, 20, 28, 32)  # mean 24 = K
SESSION_TOTAL = 20_000
WARMUP, MEASURED = 5, 60
SAMPLE_S = 0.25  # memory sampling period: reading a worker's private pages costs the sampler ~10 ms
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def write_random_file(path: Path, n: int, k: int, seed: int) -> Path:
    """n trials (T, k) of uniform rates and 10 conditions, written in blocks (memory flat in n)."""
    from jedi_rnn.data.h5trials import H5TrialWriter

    rng = np.random.default_rng(seed)
    with H5TrialWriter(path, n, T, k, dt=0.01, condition_names=[f"c{i}" for i in range(10)]) as w:
        for lo in range(0, n, 5_000):
            b = min(5_000, n - lo)
            w.write(lo, rng.uniform(-0.5, 0.5, (b, T, k)).astype(np.float32), rng.integers(0, 10, b))
    return path


def _child(spec: dict) -> dict:
    """In a fresh process: build data and model from the configs, train WARMUP + MEASURED steps."""
    import pytorch_lightning as pl
    import torch
    from hydra import compose, initialize_config_dir

    from experiments.glue.build import build_datamodule, build_model

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=spec["overrides"])
    pl.seed_everything(0)
    dm = build_datamodule(cfg.data, {})
    model = build_model(cfg.model, cfg.get("loss"), dm, {})
    ends: list[float] = []

    class StepClock(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            ends.append(time.perf_counter())

    trainer = pl.Trainer(max_steps=WARMUP + MEASURED, max_epochs=-1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[StepClock()], accelerator="cpu", devices=1)
    trainer.fit(model, datamodule=dm)
    steps = np.diff(ends[WARMUP - 1:])
    return {"step_s": float(np.median(steps)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "n_train_trials": int(dm.dims["n_train_trials"])}


def _rss_kb(pid: int) -> int:
    """Resident set size of a live process in kB (0 once it has exited); cheap, no page walk."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _private_kb(pid: int) -> int:
    """Pages of a live process that no other process maps (Private_Clean + Private_Dirty of
    /proc/<pid>/smaps_rollup), in kB; 0 once it has exited. The kernel walks the page tables for it
    (about 10 ms for a worker of a 600 MB trainer), hence the benchmark's sampling period."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except (OSError, ValueError, IndexError):
        return 0


def _process_tree(root: int) -> list[int]:
    """root and its live descendants, from the parent ids in /proc/<pid>/stat."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])  # field 4, after "(comm)"
        except (ValueError, OSError, IndexError):
            continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def _run_child(overrides: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "experiments.bench.trial_scaling", json.dumps({"overrides": overrides})],
                                 stdout=out, stderr=err, text=True, env=env, cwd=CONFIG_DIR.parent)
        peak_kb = 0
        while child.poll() is None:
            trainer, *workers = _process_tree(child.pid)
            peak_kb = max(peak_kb, _rss_kb(trainer) + sum(_private_kb(w) for w in workers))
            time.sleep(SAMPLE_S)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"benchmark child {overrides} failed:\n{err.read()[-3000:]}")
        return {**json.loads(out.read().strip().splitlines()[-1]), "peak_memory_mb": peak_kb / 1024}


# the configuration for many trials: a row-sparse table on SparseAdam (a step's cost independent of the
# table's size) and one loader worker reading the next batch from disk while the model trains;
# the default table initialisation (embedding_init=pca) reads the trials a block at a time
SCALE = ["model.sparse_embeddings=true", "data.num_workers=1", f"model.latent_dim={LATENT}", f"data.batch_size={BATCH}",
         "data.split=[0.9,0.05,0.05]"]
JEDI = ["model=jedi/jedi_lowrank", "model.init_state=context", *SCALE]
MULTI = ["data=jedi/sessions", "model=jedi/multisession", *SCALE]


def run(repeats: int = 5) -> dict:
    rounds = 3 if repeats > 1 else 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_trials_"))
    try:
        files = {n: write_random_file(tmp / f"trials_{n}.h5", n, K, seed=n) for n in SIZES}
        one = write_random_file(tmp / "one_session.h5", SESSION_TOTAL, K, seed=1)
        many = [write_random_file(tmp / f"session_{k}.h5", SESSION_TOTAL // len(SESSION_NEURONS), k, seed=k)
                for k in SESSION_NEURONS]
        runs: dict[str, list[dict]] = {}
        for _ in range(rounds):  # sizes interleaved, so a slow spell of a shared machine hits all of them
            for n, path in files.items():
                runs.setdefault(f"lazy_{n}", []).append(_run_child([*JEDI, "data=jedi/recordings", f"data.source.path={path}"]))
            runs.setdefault(f"memory_{SIZES[-1]}", []).append(_run_child(
                [*JEDI, "data=jedi/recordings", f"data.source.path={files[SIZES[-1]]}", "data.source.lazy=false"]))
            runs.setdefault(f"dense_table_{SIZES[-1]}", []).append(_run_child(  # what the sparse table saves
                [*JEDI, "data=jedi/recordings", f"data.source.path={files[SIZES[-1]]}", "model.sparse_embeddings=false"]))
            runs.setdefault("sessions_1", []).append(_run_child([*MULTI, f"data.source.paths=[{one}]"]))
            runs.setdefault("sessions_4", []).append(_run_child([*MULTI, f"data.source.paths=[{','.join(map(str, many))}]"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    step = {k: statistics.median(r["step_s"] for r in v) for k, v in runs.items()}
    rss = {k: statistics.median(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    mem = {k: statistics.median(r["peak_memory_mb"] for r in v) for k, v in runs.items()}
    small, large = f"lazy_{SIZES[0]}", f"lazy_{SIZES[-1]}"
    return {
        "name": "trial_scaling", "trials": list(SIZES), "T": T, "neurons": K, "batch": BATCH, "latent": LATENT,
        "rounds": rounds, "torch_threads": 1, "loader_workers": 1,
        **{f"{k}_peak_memory_mb": round(v, 1) for k, v in mem.items() if not k.startswith("sessions")},
        **{f"{k}_training_process_peak_rss_mb": round(v, 1) for k, v in rss.items() if not k.startswith("sessions")},
        **{f"{k}_step_s": round(v, 4) for k, v in step.items()},
        "memory_ratio_100k_vs_1k": round(mem[large] / mem[small], 3),
        "training_process_rss_ratio_100k_vs_1k": round(rss[large] / rss[small], 3),
        "step_ratio_100k_vs_1k": round(step[large] / step[small], 3),
        "dense_table_step_ratio_100k_vs_1k": round(step[f"dense_table_{SIZES[-1]}"] / step[small], 3),
        "in_memory_ratio_100k_vs_lazy_1k": round(mem[f"memory_{SIZES[-1]}"] / mem[small], 3),
        "sessions": {"total_trials": SESSION_TOTAL, "neurons": list(SESSION_NEURONS)},
        "step_ratio_4_sessions_vs_1": round(step["sessions_4"] / step["sessions_1"], 3),
        "targets": "memory_ratio_100k_vs_1k <= 1.5, step_ratio_100k_vs_1k <= 1.2",
    }


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
