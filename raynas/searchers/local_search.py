"""Local search (hill climbing with restarts), as White, Nolen, Ding et al. (2021) run it on NAS
benchmarks.

Evaluate ``num_init`` random archs and climb from the best: evaluate the neighbours of the
current arch (``space.neighbors``: every arch one decision away, in a seeded random order) and
move to the best of them when it beats the current arch -- or, with ``first_improvement``, to the
first neighbour that does. When no neighbour is better the current arch is a local optimum: the
walk restarts from the best of ``restart_samples`` fresh random archs. Neighbours already
evaluated (or equivalent to an evaluated arch) count with their known value and are not
queried again.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.searchers.base import ArchSearcher


class LocalSearch(ArchSearcher):
    """Hill climbing over ``space.neighbors`` with random restarts at local optima.

    Args:
        num_init: random archs evaluated before the first climb (it starts from their best).
        first_improvement: move as soon as a neighbour beats the current arch (default: after
            the whole neighbourhood, to its best).
        restart_samples: random archs drawn at a local optimum; the climb restarts from their best.
    """

    strategy_name = "local_search"

    def __init__(self, num_init: int = 10, first_improvement: bool = False, restart_samples: int = 1) -> None:
        super().__init__()
        if num_init < 1 or restart_samples < 1:
            raise ConfigError(f"local search needs num_init >= 1 and restart_samples >= 1 "
                              f"(got {num_init}, {restart_samples})")
        self.num_init = int(num_init)
        self.first_improvement = bool(first_improvement)
        self.restart_samples = int(restart_samples)
        self.scores: Dict[str, float] = {}             # dedup key -> fitness of evaluated archs
        self.current: Optional[Tuple[Arch, float]] = None
        self.queue: List[Arch] = []                    # neighbours of current not yet proposed
        self.pending: List[str] = []                   # keys proposed for the current step, unobserved
        self.step_best: Optional[Tuple[Arch, float]] = None
        self.random_left = 0                           # random archs still to propose (init/restart)
        self.restarts = 0
        self.moves = 0

    def on_setup(self) -> None:
        self.random_left = self.num_init

    # ------------------------------------------------------------------ proposals
    def propose(self) -> Optional[Arch]:
        for _ in range(10_000):
            if self.random_left > 0:
                self.random_left -= 1
                arch = self.space.sample(self.rng)
                self.pending.append(self.dedup_key(arch))
                return arch
            while self.queue:
                arch = self.queue.pop(0)
                key = self.dedup_key(arch)
                if key in self.scores:
                    self._consider(arch, self.scores[key])   # known: no query needed
                    continue
                if self.is_seen(arch) or key in self.pending:
                    continue  # in flight elsewhere or failed: no value to climb on
                self.pending.append(key)
                return arch
            if self.pending:
                return None  # wait for this step's results before deciding where to go
            self._advance()
        raise RuntimeError("local search made no progress in 10,000 steps")  # pragma: no cover

    def _advance(self) -> None:
        """The step's results are all in: move to a better arch, or restart at a local optimum."""
        best = self.step_best
        self.step_best = None
        if best is not None and (self.current is None or best[1] > self.current[1]):
            self._move_to(best)
        else:
            self.restarts += 1
            self.current = None
            self.random_left = self.restart_samples

    def _move_to(self, point: Tuple[Arch, float]) -> None:
        self.current = point
        self.moves += 1
        neighbours = self.space.neighbors(point[0])
        order = self.rng.permutation(len(neighbours))
        self.queue = [neighbours[i] for i in order]

    def _consider(self, arch: Arch, fitness: float) -> None:
        if self.step_best is None or fitness > self.step_best[1]:
            self.step_best = (arch, fitness)
        if (self.first_improvement and self.current is not None and fitness > self.current[1]):
            # move right away; results of the old neighbourhood still in flight are recorded only
            self.step_best = None
            self.pending = []
            self._move_to((arch, fitness))

    # ------------------------------------------------------------------ results
    def on_rejected(self, arch: Arch, reason: str) -> None:
        key = self.dedup_key(arch)
        if key not in self.pending:
            return
        self.pending.remove(key)
        if key in self.scores:
            self._consider(arch, self.scores[key])
        if self.current is None:
            self.random_left += 1  # an init/restart draw was rejected: draw another one

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        key = self.dedup_key(arch)
        fitness = self.fitness(metrics)
        if math.isfinite(fitness):
            self.scores[key] = fitness
        if key not in self.pending:
            return  # from a neighbourhood the walk has already left
        self.pending.remove(key)
        if math.isfinite(fitness):
            self._consider(arch, fitness)

    # ------------------------------------------------------------------ state
    def get_strategy_state(self) -> Dict[str, Any]:
        return {"scores": self.scores, "current": list(self.current) if self.current else None,
                "queue": self.queue, "pending": self.pending,
                "step_best": list(self.step_best) if self.step_best else None,
                "random_left": self.random_left, "restarts": self.restarts, "moves": self.moves}

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        self.scores = {k: float(v) for k, v in state["scores"].items()}
        self.current = (state["current"][0], float(state["current"][1])) if state["current"] else None
        self.queue = list(state["queue"])
        self.pending = list(state["pending"])
        self.step_best = ((state["step_best"][0], float(state["step_best"][1]))
                          if state["step_best"] else None)
        self.random_left = int(state["random_left"])
        self.restarts = int(state["restarts"])
        self.moves = int(state["moves"])
