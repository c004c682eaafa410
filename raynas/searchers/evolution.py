"""Regularized (aging) evolution, Real et al. 2019.

Start with ``population_size`` random archs; then repeatedly draw ``sample_size`` members at
random, mutate the fittest (optionally cross it with the runner-up), and add the child while the
oldest member dies. Works asynchronously: children come from whatever has been observed so far.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.searchers.base import ArchSearcher


class RegularizedEvolution(ArchSearcher):
    """Aging evolution with tournament selection."""

    strategy_name = "evolution"

    def __init__(self, population_size: int = 20, sample_size: int = 5, mutation_prob: Optional[float] = None,
                 crossover_prob: float = 0.0) -> None:
        super().__init__()
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ConfigError(f"evolution needs population_size >= 2 and 1 <= sample_size <= population_size "
                              f"(got {population_size}, {sample_size})")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ConfigError(f"crossover_prob must be within [0, 1], got {crossover_prob}")
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        self.mutation_prob = mutation_prob
        self.crossover_prob = float(crossover_prob)
        self.population: Deque[Tuple[Arch, float]] = deque()
        self._random_proposed = 0

    def propose(self) -> Arch:
        if self._random_proposed < self.population_size or not self.population:
            self._random_proposed += 1
            return self.space.sample(self.rng)
        members = list(self.population)
        k = min(self.sample_size, len(members))
        picked = self.rank_sample(members, [int(i) for i in self.rng.choice(len(members), size=k, replace=False)])
        parent = members[picked[0]][0]
        if self.crossover_prob > 0 and k > 1 and self.rng.random() < self.crossover_prob:
            parent = self.space.crossover(parent, members[picked[1]][0], self.rng)
        return self.space.mutate(parent, self.rng, self.mutation_prob)

    def rank_sample(self, members: List[Tuple[Arch, Any]], picked: List[int]) -> List[int]:
        """The tournament: order the sampled members best first (the first becomes the parent)."""
        return sorted(picked, key=lambda i: members[i][1], reverse=True)

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        fitness = self.fitness(metrics)
        if not np.isfinite(fitness):
            return  # failed evaluations never become parents
        self.population.append((arch, float(fitness)))
        while len(self.population) > self.population_size:
            self.population.popleft()  # aging: the oldest dies, not the worst

    def get_strategy_state(self) -> Dict[str, Any]:
        return {"population": [[a, f] for a, f in self.population], "random_proposed": self._random_proposed}

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        self.population = deque((a, float(f)) for a, f in state["population"])
        self._random_proposed = int(state["random_proposed"])
