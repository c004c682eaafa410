"""Strict-fairness sampling (FairNAS, Chu et al., ICCV 2021).

Each step trains ``m`` subnets, ``m`` being the most choices any decision has; for every
decision the ``m`` subnets take its choices in a fresh random permutation, so within a step each
op of each layer/edge is trained exactly once and all gradients go into one update. Decisions
with fewer choices fill the remaining subnets with random choices.

A step costs ``m`` forward/backward passes: compare it with uniform sampling at an equal number
of passes (``epochs / m``), not at equal steps.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from raynas.errors import ConfigError
from raynas.rng import derive_rng
from raynas.training.sampling import SamplingStrategy, SubnetTask, register_sampling_strategy
from raynas.training.schedule import Phase


class FairSampling(SamplingStrategy):
    """``m`` subnets per step that together use every choice of every decision once."""

    name = "fair"

    def __init__(self, rounds: int = 1) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"fair sampling option rounds must be an integer >= 1, got {rounds!r}")
        self.rounds = rounds

    def bind(self, space) -> None:
        if not space.decisions():
            raise ConfigError(f"space '{space.name}' has no decisions to sample fairly")

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        decisions = space.decisions()
        m = max(len(d.choices) for d in decisions)
        tasks: List[SubnetTask] = []
        for r in range(self.rounds):
            rng = derive_rng(seed, "fair", step, r)
            columns: Dict[str, List[Any]] = {}
            for d in decisions:
                order = list(rng.permutation(len(d.choices)))
                order += [int(i) for i in rng.integers(len(d.choices), size=m - len(d.choices))]
                columns[d.name] = [d.choices[i] for i in order]
            tasks += [SubnetTask.labels(space.from_decisions({name: col[k] for name, col in columns.items()}))
                      for k in range(m)]
        return tasks


register_sampling_strategy("fair", FairSampling)
register_sampling_strategy("fairnas", FairSampling)
