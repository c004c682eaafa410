"""Pareto fronts, non-dominated sorting, crowding distance and hypervolume.

Everything works on 'higher is better' matrices: callers multiply each column by its
objective's sign first (see :func:`to_maximisation`).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from raynas.objectives import Objective


def to_maximisation(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Flip minimised columns so that every column is maximised."""
    values = np.asarray(values, dtype=np.float64)
    return values * np.array([o.sign for o in objectives], dtype=np.float64)


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of a maximisation matrix (duplicates all kept)."""
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(pts >= pts[i], axis=1) & np.any(pts > pts[i], axis=1)
        if dominated.any():
            mask[i] = False
    return mask


def non_dominated_sort(points: np.ndarray) -> List[np.ndarray]:
    """Fronts (index arrays) in order: front 0 is the Pareto front (Deb et al. 2002)."""
    pts = np.asarray(points, dtype=np.float64)
    remaining = np.arange(len(pts))
    fronts = []
    while len(remaining):
        mask = pareto_mask(pts[remaining])
        fronts.append(remaining[mask])
        remaining = remaining[~mask]
    return fronts


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of one front (boundary points get infinity)."""
    pts = np.asarray(points, dtype=np.float64)
    n, k = pts.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(pts[:, j], kind="stable")
        span = pts[order[-1], j] - pts[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span <= 0:
            continue
        dist[order[1:-1]] += (pts[order[2:], j] - pts[order[:-2], j]) / span
    return dist


#: the default reference point sits this fraction of each objective's range below the worst point
REFERENCE_MARGIN = 0.1


def default_reference(points: np.ndarray, margin: float = REFERENCE_MARGIN) -> np.ndarray:
    """Reference point of a maximisation matrix: the nadir (worst value of each column) moved
    ``margin`` x the column's range further down, so the extreme points of a front still add
    volume. A column with no spread moves by ``margin`` x max(1, |value|).

    Hypervolumes are comparable only under one reference point: to compare runs, compute it once
    (e.g. over all runs' points, or over the whole space when a table gives it) and pass it.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or len(pts) == 0:
        raise ValueError("default_reference needs a non-empty (n, objectives) matrix")
    low, high = pts.min(axis=0), pts.max(axis=0)
    span = high - low
    span = np.where(span > 0, span, np.maximum(1.0, np.abs(low)))
    return low - margin * span


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``points`` above ``reference`` (maximisation).

    Points not strictly better than the reference in every coordinate contribute nothing.
    2-D uses a sweep; higher dimensions slice recursively along the last axis (exact; fine for
    the front sizes a NAS run produces).
    """
    pts = np.asarray(points, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if pts.size == 0:
        return 0.0
    pts = pts[np.all(pts > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[pareto_mask(pts)]
    return float(_hv(pts, ref))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    k = pts.shape[1]
    if k == 1:
        return float(pts[:, 0].max() - ref[0])
    if k == 2:
        order = np.argsort(-pts[:, 0])
        volume, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y > best_y:
                volume += (x - ref[0]) * (y - best_y)
                best_y = y
        return volume
    # slice along the last coordinate: between consecutive levels the dominated set is the
    # (k-1)-dimensional hypervolume of the points at or above that level
    levels = np.sort(np.unique(pts[:, -1]))
    volume, lower = 0.0, ref[-1]
    for level in levels:
        above = pts[pts[:, -1] >= level][:, :-1]
        volume += _hv(above[pareto_mask(above)], ref[:-1]) * (level - lower)
        lower = level
    return volume
