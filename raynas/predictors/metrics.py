"""How well a predictor ranks architectures: Kendall τ, Spearman ρ and RMSE on held-out archs.

Search only needs the order right (which arch is better), so rank correlations are the headline
numbers; RMSE says whether the predicted values themselves can be trusted (e.g. against a bound).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from raynas.errors import DataError


def ranking_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, float]:
    """``kendall_tau`` (τ-b, ties handled), ``spearman_rho``, ``rmse`` and ``n``."""
    from scipy.stats import kendalltau, spearmanr

    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise DataError(f"ranking_metrics: {t.size} true values but {p.size} predictions")
    if t.size < 2:
        raise DataError(f"ranking_metrics needs at least 2 archs, got {t.size}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise DataError("ranking_metrics: true values and predictions must be finite")
    constant = np.ptp(t) == 0 or np.ptp(p) == 0  # a constant ranks nothing: correlation 0
    tau = 0.0 if constant else float(kendalltau(t, p).statistic)
    rho = 0.0 if constant else float(spearmanr(t, p).statistic)
    return {"kendall_tau": tau, "spearman_rho": rho,
            "rmse": float(np.sqrt(np.mean((t - p) ** 2))), "n": int(t.size)}
