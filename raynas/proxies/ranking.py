"""Rank statistics for proxies: correlations with ground truth and rank-aggregated ensembles.

A NaN proxy score (the proxy is undefined for that network, e.g. a constant output) ranks
below every finite score: such networks are the degenerate ones. NaN ground truth drops the pair.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

from raynas.errors import ConfigError


def _with_nan_lowest(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).copy()
    x[np.isnan(x)] = -np.inf
    return x


def rank_correlations(scores: Sequence[float], truth: Sequence[float]) -> Dict[str, float]:
    """Spearman ρ and Kendall τ (tau-b) of ``scores`` against ``truth``, and the pair count."""
    s = _with_nan_lowest(scores)
    t = np.asarray(truth, dtype=np.float64)
    if s.shape != t.shape:
        raise ConfigError(f"scores and truth differ in length: {s.shape[0]} vs {t.shape[0]}")
    keep = ~np.isnan(t)
    s, t = s[keep], t[keep]
    if s.size < 3 or np.all(s == s[0]) or np.all(t == t[0]):
        return {"spearman": float("nan"), "kendall": float("nan"), "n": int(s.size)}
    # ranks first, so -inf (NaN scores) become ordinary lowest ranks
    rs, rt = stats.rankdata(s), stats.rankdata(t)
    return {"spearman": float(stats.spearmanr(rs, rt).statistic),
            "kendall": float(stats.kendalltau(rs, rt).statistic), "n": int(s.size)}


def top_precision(scores: Sequence[float], truth: Sequence[float], fraction: float = 0.1) -> float:
    """Of the ``fraction`` best archs by ``scores``, the share that is among the ``fraction`` best
    by ``truth`` (Ning et al., NeurIPS 2021, "P@top K"): what a search that trusts the scores
    keeps. NaN scores rank lowest; ties keep input order."""
    s = _with_nan_lowest(scores)
    t = np.asarray(truth, dtype=np.float64)
    if s.shape != t.shape:
        raise ConfigError(f"scores and truth differ in length: {s.shape[0]} vs {t.shape[0]}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, int(round(fraction * s.size)))
    best_scored = set(np.argsort(-s, kind="stable")[:k].tolist())
    best_true = set(np.argsort(-np.nan_to_num(t, nan=-np.inf), kind="stable")[:k].tolist())
    return len(best_scored & best_true) / k


def normalised_ranks(values: Sequence[float]) -> np.ndarray:
    """Average ranks scaled to [0, 1] (NaN lowest), so columns of any scale can be combined."""
    x = _with_nan_lowest(values)
    if x.size <= 1:
        return np.zeros_like(x)
    return (stats.rankdata(x) - 1.0) / (x.size - 1.0)


def rank_ensemble(columns: Mapping[str, Sequence[float]],
                  weights: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """Rank aggregation: the (weighted) mean of each proxy's normalised rank per network."""
    if not columns:
        raise ConfigError("rank_ensemble needs at least one proxy column")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ConfigError(f"proxy columns differ in length: {sorted(lengths)}")
    weights = dict(weights or {name: 1.0 for name in columns})
    missing = set(columns) - set(weights)
    if missing:
        raise ConfigError(f"no weight for proxies {sorted(missing)}")
    total = sum(weights[n] for n in columns)
    if total <= 0:
        raise ConfigError("ensemble weights must sum to a positive number")
    return sum(weights[n] * normalised_ranks(v) for n, v in columns.items()) / total
