"""Deterministic, class-stratified partitions of a labelled set into named splits."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from raynas.errors import DataError


def _quota(n: int, available: np.ndarray) -> np.ndarray:
    """Split ``n`` over classes in proportion to ``available`` (largest-remainder rounding)."""
    total = int(available.sum())
    ideal = n * available / total
    counts = np.floor(ideal).astype(np.int64)
    short = n - int(counts.sum())
    if short:
        # ties go to the lower class index (stable sort), so the result is deterministic
        order = np.argsort(-(ideal - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def stratified_split(labels: np.ndarray, sizes: Mapping[str, int], rng: np.random.Generator, *,
                     rest: str = "train", rest_size: Optional[int] = None,
                     source: str = "dataset") -> Dict[str, np.ndarray]:
    """Carve splits of the given sizes out of ``labels`` (in order), keeping class proportions;
    what remains goes to ``rest`` (capped at ``rest_size``). Indices come back sorted."""
    labels = np.asarray(labels)
    n_total = len(labels)
    requested = sum(int(v) for v in sizes.values()) + (int(rest_size) if rest_size is not None else 0)
    if any(int(v) < 0 for v in sizes.values()) or (rest_size is not None and rest_size < 0):
        raise DataError(f"split sizes for {source} must be non-negative, got {dict(sizes)}")
    if requested > n_total:
        raise DataError(f"split sizes for {source} ask for {requested} images "
                        f"({dict(sizes)}, {rest}={rest_size}) but it has {n_total}; pass smaller sizes")
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    used = np.zeros(len(classes), dtype=np.int64)
    out: Dict[str, np.ndarray] = {}
    plan = list(sizes.items()) + [(rest, rest_size)]
    for name, size in plan:
        available = np.array([len(p) for p in pools]) - used
        n = int(available.sum()) if size is None else int(size)
        counts = _quota(n, available) if n and available.sum() else np.zeros_like(used)
        parts = [pools[i][used[i]:used[i] + counts[i]] for i in range(len(classes))]
        used += counts
        out[name] = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    return out
