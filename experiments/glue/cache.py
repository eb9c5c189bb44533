"""The one on-disk cache of built things (trained stages, trial sets, pose pools) and the one atomic write.

An entry lives at ``<root>/<name>-<config_hash(key)><suffix>``. Building or reading an entry holds a
lock on it, so runs started together (``--jobs``, multirun, SLURM arrays, DDP ranks) build it once and
the others wait, then reuse it; an entry is written atomically, so a crash never leaves a half-written
one; an entry that fails to load is reported and rebuilt, never used half-read.

The libraries receive a ``DiskCache`` by injection (``cache: ${paths.cache}`` in a data config) and
build in memory without one; they never import this module.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)
T = TypeVar("T")


def config_hash(config: Any) -> str:
    """Stable short hash of a JSON-serialisable config (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it is synced and renamed onto
    ``path``, on an exception it is removed and whatever was at ``path`` before stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _same(value: T) -> T:
    return value


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, read now (a truncated file fails here, not later); never unpickles."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class DiskCache:
    """Built things kept under ``root`` between runs, keyed by a hash of the config they were built from.

    Args:
        root: the cache folder (``paths.cache_dir``).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, name: str, key: Any, suffix: str = "") -> Path:
        """Where the entry ``name`` (which may hold folders, e.g. ``posedistill/target``) built from
        ``key`` lives: ``<root>/<name>-<config_hash(key)><suffix>``."""
        return self.root / f"{name}-{config_hash(key)}{suffix}"

    def get_or_build(self, path: Path, load: Callable[[Path], T], build: Callable[[], T],
                     save: Callable[[T, IO[bytes]], None]) -> T:
        """``load(path)``, or ``build()`` and ``save`` the value into ``path`` atomically; the lock
        ``<path>.lock`` is held throughout."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):
            if path.exists():
                try:
                    value = load(path)
                    log.info("cache: reusing %s", path)
                    return value
                except Exception as err:  # truncated, corrupt or stale: rebuild, never use half-read
                    log.warning("cache entry %s is unusable (%s: %s); rebuilding it", path, type(err).__name__, err)
                    path.unlink()
            log.info("cache: building %s", path)
            value = build()
            with atomic_write(path) as f:
                save(value, f)
            return value

    def arrays(self, name: str, key: Any, build: Callable[[], T],
               encode: Callable[[T], dict[str, np.ndarray]] = _same,
               decode: Callable[[dict[str, np.ndarray]], T] = _same) -> T:
        """A value kept as named arrays in ``<name>-<hash>.npz`` (plain arrays, never pickles): read and
        ``decode``-d, or built and stored ``encode``-d. A ``decode`` that raises marks the entry unusable."""
        return self.get_or_build(self.path(name, key, ".npz"), lambda p: decode(_read_npz(p)), build,
                                 lambda v, f: np.savez(f, **encode(v)))

    def __repr__(self) -> str:
        return f"DiskCache({str(self.root)!r})"
