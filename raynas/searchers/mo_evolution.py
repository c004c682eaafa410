"""Multi-objective regularized evolution: aging evolution whose tournament ranks by Pareto rank
and crowding distance (NSGA-II's order, Deb et al. 2002) instead of one fitness.

The population is scored on every objective (each flipped to 'higher is better'). A tournament
samples ``sample_size`` members; the winner is the one on the best non-dominated front of the
whole population, ties broken by the larger crowding distance within that front (so the parent
pressure spreads along the front instead of piling on one end). Ageing is regularized
evolution's: the oldest member dies, whatever its rank.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from raynas.arch import Arch
from raynas.pareto import crowding_distance, non_dominated_sort
from raynas.searchers.evolution import RegularizedEvolution


class MultiObjectiveEvolution(RegularizedEvolution):
    """Aging evolution with a (Pareto rank, crowding distance) tournament over all objectives."""

    strategy_name = "mo_evolution"
    multi_objective = True

    def objective_vector(self, metrics: Optional[Mapping[str, float]]) -> Optional[List[float]]:
        """The objectives as a 'higher is better' vector, or None when one is missing."""
        if not metrics:
            return None
        out = []
        for o in self.objectives:
            value = metrics.get(o.metric)
            if value is None or not math.isfinite(float(value)):
                return None
            out.append(o.sign * float(value))
        return out

    def population_ranks(self) -> Tuple[np.ndarray, np.ndarray]:
        """(front index, crowding distance) of every member, front 0 being non-dominated."""
        # the population changes only when a result arrives; proposals in between reuse the ranks
        cached = getattr(self, "_ranks", None)
        if cached is not None and cached[0] == self.num_observed and cached[1] == len(self.population):
            return cached[2]
        points = np.array([v for _, v in self.population], dtype=np.float64)
        rank = np.zeros(len(points), dtype=np.int64)
        crowd = np.zeros(len(points))
        for level, front in enumerate(non_dominated_sort(points)):
            rank[front] = level
            crowd[front] = crowding_distance(points[front])
        self._ranks = (self.num_observed, len(self.population), (rank, crowd))
        return rank, crowd

    def rank_sample(self, members: List[Tuple[Arch, Any]], picked: List[int]) -> List[int]:
        rank, crowd = self.population_ranks()
        return sorted(picked, key=lambda i: (rank[i], -crowd[i]))

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        vector = self.objective_vector(metrics)
        if vector is None:
            return  # failed evaluations never become parents
        self.population.append((arch, vector))
        while len(self.population) > self.population_size:
            self.population.popleft()  # aging: the oldest dies, not the worst

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        self.population = deque((a, [float(x) for x in v]) for a, v in state["population"])
        self._random_proposed = int(state["random_proposed"])
