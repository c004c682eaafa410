"""Which subnets one training step trains, and with which target.

A strategy turns a step number into a list of :class:`SubnetTask`. The subnets come from an RNG
seeded by (seed, step, k) only, never from global state, so every data-parallel rank trains the
same subnets at the same step and a resumed run continues with the same choices.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.rng import derive_rng


@dataclass(frozen=True)
class SubnetTask:
    """Train ``arch`` on ``target``: ``"labels"`` (cross-entropy) or ``"teacher"`` (distillation
    from the logits of the step's teacher task, or from a fixed teacher model when one is set).
    ``is_teacher`` marks the task whose detached logits teach the others."""

    arch: Arch
    target: str = "labels"
    is_teacher: bool = False

    def __post_init__(self) -> None:
        if self.target not in ("labels", "teacher"):
            raise ConfigError(f"a subnet task's target is 'labels' or 'teacher', got {self.target!r}")


class SamplingStrategy(ABC):
    """Picks the subnets of each step. Subclasses are small and stateless but for their options."""

    name = "base"

    @abstractmethod
    def plan(self, space, step: int, seed: int) -> List[SubnetTask]:
        """Tasks of training step ``step`` (teacher tasks first)."""

    def state_dict(self) -> Dict[str, Any]:
        """JSON-able state to checkpoint (strategies that carry a schedule override this)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class UniformSampling(SamplingStrategy):
    """Single-path one-shot (SPOS, Guo et al. 2020): one uniformly random subnet on the labels."""

    name = "uniform"

    def plan(self, space, step: int, seed: int) -> List[SubnetTask]:
        return [SubnetTask(space.sample(derive_rng(seed, "subnet", step, 0)), "labels")]


class SandwichSampling(SamplingStrategy):
    """Sandwich rule with in-place distillation (BigNAS / AttentiveNAS).

    The largest subnet learns from the labels; its detached logits teach ``num_random`` random
    subnets and the smallest one. All backward passes accumulate into one optimizer step.
    """

    name = "sandwich"

    def __init__(self, num_random: int = 2, distill: bool = True) -> None:
        if num_random < 0:
            raise ConfigError(f"num_random must be >= 0, got {num_random}")
        self.num_random = int(num_random)
        self.distill = bool(distill)

    def plan(self, space, step: int, seed: int) -> List[SubnetTask]:
        target = "teacher" if self.distill else "labels"
        tasks = [SubnetTask(space.largest(), "labels", is_teacher=self.distill)]
        tasks += [SubnetTask(space.sample(derive_rng(seed, "subnet", step, k)), target)
                  for k in range(1, self.num_random + 1)]
        tasks.append(SubnetTask(space.smallest(), target))
        return tasks


_STRATEGIES: Dict[str, Callable[..., SamplingStrategy]] = {
    "uniform": UniformSampling,
    "spos": UniformSampling,
    "sandwich": SandwichSampling,
}


def register_sampling_strategy(name: str, factory: Callable[..., SamplingStrategy]) -> None:
    _STRATEGIES[name] = factory


def list_sampling_strategies() -> List[str]:
    return sorted(_STRATEGIES)


def make_sampling_strategy(name: str, **options: Any) -> SamplingStrategy:
    if name not in _STRATEGIES:
        raise ConfigError(f"unknown sampling strategy '{name}'; available: {', '.join(list_sampling_strategies())}")
    try:
        return _STRATEGIES[name](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for sampling strategy '{name}': {exc}") from exc
