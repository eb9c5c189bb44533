"""Label-free starting points for held-out embedding inference, taken from the trained context
table alone: k-means centres of its rows, points between neighbouring centres, or the overall mean.
No condition label is read: permuting the training trials' labels changes no candidate."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor

STARTS = ("centres", "centres_between", "mean")


def kmeans_centres(rows: Tensor, n_centres: int, seed: int = 0) -> Tensor:
    """k-means centres (k, d) of the table's rows (n, d), k = min(n_centres, distinct rows);
    seeded, so the same table gives the same centres."""
    x = rows.detach().double().cpu().numpy()
    k = min(n_centres, len(np.unique(x.round(12), axis=0)))
    if k <= 1:
        return rows.mean(0, keepdim=True)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    order = np.lexsort(km.cluster_centers_.T[::-1])  # a canonical order, independent of the draw
    return torch.as_tensor(km.cluster_centers_[order], dtype=rows.dtype, device=rows.device)


def segment_points(points: Tensor, neighbours: int, fractions: tuple[float, ...] = (0.25, 0.5, 0.75)) -> Tensor:
    """Points at ``fractions`` of the way along the segment from each of ``points`` (K, d) to each of
    its ``neighbours`` nearest others, every unordered pair once: (pairs · len(fractions), d)."""
    K = len(points)
    if K < 2 or neighbours < 1:
        return points[:0]
    dist = torch.cdist(points, points).fill_diagonal_(float("inf"))
    nearest = dist.topk(min(neighbours, K - 1), largest=False).indices  # (K, n)
    pairs = sorted({(min(i, j), max(i, j)) for i in range(K) for j in nearest[i].tolist()})
    i, j = torch.tensor(pairs, device=points.device).T
    f = torch.tensor(fractions, dtype=points.dtype, device=points.device)[:, None, None]  # (F, 1, 1)
    return ((1 - f) * points[i] + f * points[j]).reshape(-1, points.shape[1])  # (F, P, d) -> (F·P, d)


def candidate_starts(rows: Tensor, start: str, n_centres: int, neighbours: int, seed: int = 0) -> Tensor:
    """Candidate starting embeddings (M, d) from the context table's rows (n, d).

    ``centres``: k-means centres of the rows; ``centres_between``: those plus points on the segments
    to each centre's ``neighbours`` nearest centres (a trial of an unseen condition often lies
    between seen ones, behind a barrier of phase-slip minima that descent from a centre cannot
    cross); ``mean``: the mean row.
    """
    if start not in STARTS:
        raise ValueError(f"model.infer.init must be one of {list(STARTS)}, got {start!r}")
    if start == "mean":
        return rows.mean(0, keepdim=True)
    centres = kmeans_centres(rows, n_centres, seed)
    if start == "centres":
        return centres
    return torch.cat([centres, segment_points(centres, neighbours)])
