"""raynas.pareto (moocore underneath) against the definitions, computed by brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from raynas.pareto import crowding_distance, hypervolume, non_dominated_sort, pareto_mask


def _dominated(p: np.ndarray, q: np.ndarray) -> bool:
    """q dominates p (maximisation)."""
    return bool(np.all(q >= p) and np.any(q > p))


def _brute_fronts(points: np.ndarray):
    remaining, fronts = list(range(len(points))), []
    while remaining:
        front = [i for i in remaining if not any(_dominated(points[i], points[j]) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


def _brute_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Sum of the grid cells (between consecutive coordinates) that some point dominates."""
    pts = points[np.all(points > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    axes = [np.unique(np.concatenate([[r], pts[:, j]])) for j, r in enumerate(ref)]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        upper = np.array([axes[j][c + 1] for j, c in enumerate(cell)])
        if np.any(np.all(pts >= upper, axis=1)):
            volume += float(np.prod([axes[j][c + 1] - axes[j][c] for j, c in enumerate(cell)]))
    return volume


@pytest.mark.parametrize("seed", range(12))
def test_fronts_mask_and_hypervolume_match_the_definitions(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 3
    # integers make ties and duplicates, which the definitions treat exactly
    points = rng.integers(0, 5, size=(int(rng.integers(1, 14)), k)).astype(np.float64)
    fronts = _brute_fronts(points)
    assert [list(f) for f in non_dominated_sort(points)] == fronts
    assert pareto_mask(points).tolist() == [i in fronts[0] for i in range(len(points))]
    ref = points.mean(axis=0) - 0.5 if seed % 2 else points.min(axis=0) - 1.0  # some points below it
    assert hypervolume(points, ref) == pytest.approx(_brute_hypervolume(points, ref), rel=1e-12, abs=1e-12)


def test_empty_and_degenerate_inputs():
    assert non_dominated_sort(np.zeros((0, 2))) == [] and pareto_mask(np.zeros((0, 2))).size == 0
    assert hypervolume(np.zeros((0, 2)), [0.0, 0.0]) == 0.0
    assert hypervolume(np.array([[1.0, 1.0]]), [1.0, 0.0]) == 0.0  # not strictly above the reference
    assert hypervolume(np.array([[2.0], [3.0]]), [0.5]) == pytest.approx(2.5)
    assert crowding_distance(np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])).tolist() == [np.inf, 2.0, np.inf]
