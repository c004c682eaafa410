"""Isomorphism-aware sampling: uniform over isomorphism classes, not over arch encodings.

In a cell space many encodings compute the same function (NB201: 15,625 cells, 6,466 classes),
and uniform sampling over encodings trains big classes (cells full of ``none``) far more often
than small ones. This strategy draws a class uniformly and trains its representative (Ning et
al., NeurIPS 2021, "de-isomorphic sampling"). The space provides the classes through
``representatives(key)``; a supernet built to serve every arch by its class representative
(NB201: supernet option ``iso_key``) then evaluates exactly the paths this trains.
"""
from __future__ import annotations

from typing import List, Optional

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.rng import derive_rng
from raynas.training.sampling import SamplingStrategy, SubnetTask, register_sampling_strategy
from raynas.training.schedule import Phase


class IsomorphicSampling(SamplingStrategy):
    """``num_subnets`` class representatives per step, each class equally likely."""

    name = "isomorphic"

    def __init__(self, key: str = "unique_str", num_subnets: int = 1) -> None:
        if isinstance(num_subnets, bool) or not isinstance(num_subnets, int) or num_subnets < 1:
            raise ConfigError(f"num_subnets must be an integer >= 1, got {num_subnets!r}")
        self.key, self.num_subnets = str(key), num_subnets
        self._classes: Optional[List[Arch]] = None

    def bind(self, space) -> None:
        representatives = getattr(space, "representatives", None)
        if not callable(representatives):
            raise ConfigError(f"space '{space.name}' does not list isomorphism classes "
                              "(no representatives()); use sampler 'uniform' for it")
        self._classes = representatives(self.key)
        if not self._classes:
            raise ConfigError(f"space '{space.name}' listed no isomorphism classes for key {self.key!r}")

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        if self._classes is None:
            self.bind(space)
        classes = self._classes or []
        return [SubnetTask.labels(classes[int(derive_rng(seed, "subnet", step, k).integers(len(classes)))])
                for k in range(self.num_subnets)]


register_sampling_strategy("isomorphic", IsomorphicSampling)
register_sampling_strategy("deiso", IsomorphicSampling)
