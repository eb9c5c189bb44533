"""Small shared figure helpers for the dynamics analyses (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def condition_colors(n: int, values: Optional[Sequence[float]] = None) -> list:
    """One colour per condition: ordered by ``values`` on viridis when given, else tab10/tab20."""
    if values is not None:
        v = np.asarray(values, dtype=float)
        span = v.max() - v.min()
        t = (v - v.min()) / span if span > 0 else np.zeros_like(v)
        return [plt.cm.viridis(x) for x in t]
    cmap = plt.cm.tab10 if n <= 10 else plt.cm.tab20
    return [cmap(i % cmap.N) for i in range(n)]


def plot_eigenvalues(ax, eigenvalues: Sequence[np.ndarray], labels: Sequence[str], colors: Sequence,
                     unit_circle: bool = False, vline: Optional[float] = None, title: str = "",
                     marker_size: float = 10.0) -> None:
    """Scatter the complex eigenvalues of each condition (one array per condition) on one axis."""
    for eig, label, color in zip(eigenvalues, labels, colors):
        eig = np.asarray(eig).ravel()
        eig = eig[np.isfinite(eig)]
        ax.scatter(eig.real, eig.imag, s=marker_size, color=color, label=label, alpha=0.7, linewidths=0)
    if unit_circle:
        t = np.linspace(0, 2 * np.pi, 400)
        ax.plot(np.cos(t), np.sin(t), color="k", lw=0.8, ls="--")
        ax.set_aspect("equal", adjustable="datalim")
    if vline is not None:
        ax.axvline(vline, color="k", lw=0.8, ls="--")
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.set_title(title)


def legend_outside(fig, ax, max_entries: int = 20) -> None:
    """A legend to the right of the axes (skipped when there are too many conditions)."""
    handles, labels = ax.get_legend_handles_labels()
    if 0 < len(labels) <= max_entries:
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)


def save_figure(fig, path: Path) -> Path:
    """Write the figure as PNG (creating the folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def analysis_array_path(out_dir: Path, name: str) -> Path:
    """Where an analysis keeps its per-context arrays: ``out_dir.parent / "analysis" / "<name>.npz"``."""
    path = Path(out_dir).parent / "analysis" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def safe_key(name: str) -> str:
    """A condition name usable inside a metric key (letters, digits, '_', '.', '-')."""
    return "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in str(name))
