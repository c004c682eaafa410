"""Mean best rank (mBR): how good the network a proxy picks inside each group really is.

NAS-Bench-Zero (Chen et al., 2021) and PreNAS (appendix A) use it where a proxy only has to
choose within groups of equal cost (transformer isomers; NB201 cells with the same operations):

    mBR = Σ_g (r_g − 1) / Σ_g (|g| − 1)

``r_g`` is the true rank (1 = most accurate) of the member the proxy scores highest in group
``g``, ``|g|`` the group's size. 0: the proxy always picks the best member; 1: always the worst.
Groups of one member say nothing and are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Hashable, List, Sequence

import numpy as np

from raynas.errors import ConfigError


@dataclass(frozen=True)
class BestRank:
    """One group's outcome: the true rank of the proxy's pick, among ``size`` members."""

    group: Hashable
    rank: float
    size: int


def best_ranks(scores: Sequence[float], truth: Sequence[float], groups: Sequence[Hashable]) -> List[BestRank]:
    """Per group (of two or more members): the true rank of the member with the best score.

    The true rank is 1 + the number of members strictly more accurate. A NaN score never wins
    (NaN marks a degenerate network). Members tied on the best score count as the worst of
    them, so a proxy that cannot tell members apart (a constant) scores mBR 1, not a lucky 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if not (len(s) == len(t) == len(groups)):
        raise ConfigError(f"scores, truth and groups differ in length: {len(s)}, {len(t)}, {len(groups)}")
    if np.isnan(t).any():
        raise ConfigError("truth holds NaN: drop the archs without a known accuracy first")
    members: Dict[Hashable, List[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out: List[BestRank] = []
    for g, idx in members.items():
        if len(idx) < 2:
            continue
        gs, gt = s[idx], t[idx]
        finite = np.where(np.isnan(gs), -np.inf, gs)
        picked = np.flatnonzero(finite == finite.max())
        worst_rank = max(1 + int(np.sum(gt > gt[p])) for p in picked)
        out.append(BestRank(g, float(worst_rank), len(idx)))
    return out


def mean_best_rank(scores: Sequence[float], truth: Sequence[float], groups: Sequence[Hashable]) -> float:
    """mBR over ``groups`` (one label per arch); NaN when no group has two members."""
    ranks = best_ranks(scores, truth, groups)
    denominator = sum(r.size - 1 for r in ranks)
    if denominator == 0:
        return float("nan")
    return sum(r.rank - 1 for r in ranks) / denominator


__all__ = ["BestRank", "best_ranks", "mean_best_rank"]
