"""Few-shot training (Zhao et al., ICML 2021): one-shot first, then split into sub-supernets.

Phase ``one_shot`` trains the whole supernet for ``split_at`` of the epochs; phase ``few_shot``
starts by splitting it (the supernet copies its weights into one sub-supernet per op of its
split edge, :meth:`split`) with a fresh optimizer, and trains the rest of the epochs, each arch
updating the sub-supernet of its op. Both phases draw subnets with the ``base`` strategy, so the
total number of forward/backward passes equals the base strategy's over the same epochs.

The supernet must be able to split (NB201: supernet option ``split_edge``); the trainer checks
that before the first step.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from raynas.errors import ConfigError
from raynas.training.sampling import (SamplingStrategy, SubnetTask, make_sampling_strategy,
                                      register_sampling_strategy)
from raynas.training.schedule import Phase, PhasePlan


class FewShotSampling(SamplingStrategy):
    """The base strategy's subnets in two phases around a supernet split."""

    name = "few_shot"

    def __init__(self, split_at: float = 0.5, base: str = "uniform",
                 base_options: Optional[Mapping[str, Any]] = None) -> None:
        if isinstance(split_at, bool) or not isinstance(split_at, (int, float)) or not 0 < split_at < 1:
            raise ConfigError(f"few_shot option split_at must be a fraction in (0, 1), got {split_at!r}")
        if base in ("few_shot", "fewshot"):
            raise ConfigError("few_shot cannot wrap itself; pick base 'uniform', 'fair' or 'isomorphic'")
        self.split_at = float(split_at)
        self.base = make_sampling_strategy(base, **dict(base_options or {}))

    def bind(self, space) -> None:
        self.base.bind(space)

    def bind_schedule(self, plan: PhasePlan) -> None:
        self.base.bind_schedule(plan)

    def phases(self, epochs: float, lr: float, warmup_epochs: float) -> List[Phase]:
        first = epochs * self.split_at
        return [Phase("one_shot", first, lr, min(warmup_epochs, first)),
                Phase("few_shot", epochs - first, lr, 0.0, reset_optimizer=True, split_supernet=True)]

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        return self.base.plan(space, step, seed, phase)

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "base": self.base.state_dict()}


register_sampling_strategy("few_shot", FewShotSampling)
register_sampling_strategy("fewshot", FewShotSampling)
