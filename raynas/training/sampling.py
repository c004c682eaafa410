"""Which subnets one training step trains, and with which targets.

A strategy declares the run's phases (:meth:`SamplingStrategy.phases`; one for most) and turns a
global step into a list of :class:`SubnetTask` (:meth:`SamplingStrategy.plan`). The subnets come
from an RNG seeded by (seed, step, k) only, never from global state, so every data-parallel rank
trains the same subnets at the same step and a resumed run continues with the same choices.

Strategies here: ``uniform`` (SPOS), ``sandwich`` (BigNAS in-place distillation), ``fixed`` (one
arch: stand-alone training, or the hybrid space's mixed modes at fixed widths); OFA progressive
shrinking, PreNAS preferred sampling, FairNAS ``fair``, isomorphism-aware ``isomorphic`` and
``few_shot`` splitting live in their own modules and register here.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.registry import Registry
from raynas.rng import derive_rng
from raynas.training.schedule import Phase, PhasePlan, single_phase


@dataclass(frozen=True)
class SubnetTask:
    """Train ``arch`` on ``label_weight`` x cross-entropy(labels) + ``distill_weight`` x
    distillation from the step's teacher logits.

    ``is_teacher`` marks the task whose detached logits teach the later tasks of the step
    (in-place distillation); phases with a fixed teacher model take the teacher's logits instead.
    ``regularize`` keeps dropout on for this task (BigNAS regularises only the largest subnet);
    label smoothing applies to every label loss.
    """

    arch: Arch
    label_weight: float = 1.0
    distill_weight: float = 0.0
    is_teacher: bool = False
    regularize: bool = True

    def __post_init__(self) -> None:
        for key in ("label_weight", "distill_weight"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"a subnet task's {key} must be a number >= 0, got {value!r}")
        if self.label_weight == 0 and self.distill_weight == 0:
            raise ConfigError("a subnet task needs a label or a distillation loss (both weights are 0)")

    @classmethod
    def labels(cls, arch: Arch, **kw: Any) -> "SubnetTask":
        return cls(arch, 1.0, 0.0, **kw)

    @classmethod
    def distill(cls, arch: Arch, weight: float = 1.0, **kw: Any) -> "SubnetTask":
        return cls(arch, 0.0, weight, **kw)


class SamplingStrategy(ABC):
    """Picks the subnets of each step. Subclasses hold only their options: anything that changes
    during training is a function of the step, so nothing needs saving to resume."""

    name = "base"

    def bind(self, space) -> None:
        """Check the options against the space once, before training (raise ConfigError)."""

    def phases(self, epochs: float, lr: float, warmup_epochs: float) -> List[Phase]:
        """The run's phases; by default one of ``epochs`` at peak ``lr`` (the config's)."""
        return single_phase(epochs, lr, warmup_epochs)

    def bind_schedule(self, plan: PhasePlan) -> None:
        """Learn the run's step layout (total steps) once the trainer has laid out the phases;
        for options given as a fraction of the run."""

    @abstractmethod
    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        """Tasks of training step ``step`` (a task marked ``is_teacher`` comes first)."""

    def describe(self) -> str:
        """A few words on the rule, for a progress line."""
        return f"{self.name} rule"

    def state_dict(self) -> Dict[str, Any]:
        """JSON-able state to checkpoint (the built-in strategies have none beyond the step)."""
        return {"name": self.name}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state and state.get("name") not in (None, self.name):
            raise ConfigError(f"the checkpoint was trained with sampling strategy "
                              f"'{state.get('name')}', not '{self.name}'")


class UniformSampling(SamplingStrategy):
    """Single-path one-shot (SPOS, Guo et al. 2020; AutoFormer): ``num_subnets`` uniformly random
    subnets per step (one by default), each on the labels."""

    name = "uniform"

    def __init__(self, num_subnets: int = 1) -> None:
        if isinstance(num_subnets, bool) or not isinstance(num_subnets, int) or num_subnets < 1:
            raise ConfigError(f"num_subnets must be an integer >= 1, got {num_subnets!r}")
        self.num_subnets = num_subnets

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        return [SubnetTask.labels(space.sample(derive_rng(seed, "subnet", step, k)))
                for k in range(self.num_subnets)]


class SandwichSampling(SamplingStrategy):
    """Sandwich rule with in-place distillation (BigNAS / AttentiveNAS).

    The largest subnet learns from the labels (with label smoothing, and the only one with
    dropout); its detached logits teach ``num_random`` random subnets and the smallest one. All
    backward passes accumulate into one optimizer step. ``distill=False`` trains every subnet
    on the labels instead. ``student_weight`` scales every student's loss (1: the sum of all
    subnets' losses, as BigNAS; smaller values let the largest subnet dominate the shared
    weights' update). One random subnet by default (BigNAS uses two): on the digits benchmark
    the largest subnet then learns nearly as fast per step as alone, the smallest better than
    with two, and each step costs a subnet less (benchmarks/supernet_convergence.py).

    ``distill_warmup`` is the fraction of the run's steps in which the students learn from the
    labels before distillation starts (default: the first half). Early on the largest subnet is
    itself near chance, and students that imitate it learn slower than on the labels: at equal
    steps the warm-up beat distillation from step 0 for the largest subnet by 4.2 points on
    CIFAR-10 (936 steps, 2 seeds, both seeds) and 17.6 on digits (108 steps, 3 seeds), and
    matched or beat it in each of 3 seeds at 432 steps on digits (benchmarks/supernet_convergence.py).
    ``distill_warmup=0`` is BigNAS' distillation from the first step.
    """

    name = "sandwich"

    def __init__(self, num_random: int = 1, distill: bool = True, student_weight: float = 1.0,
                 distill_warmup: float = 0.5) -> None:
        if isinstance(num_random, bool) or not isinstance(num_random, int) or num_random < 0:
            raise ConfigError(f"num_random must be an integer >= 0, got {num_random!r}")
        if isinstance(student_weight, bool) or not isinstance(student_weight, (int, float)) \
                or not student_weight > 0:
            raise ConfigError(f"student_weight must be a number > 0, got {student_weight!r}")
        if isinstance(distill_warmup, bool) or not isinstance(distill_warmup, (int, float)) \
                or not 0 <= distill_warmup < 1:
            raise ConfigError(f"distill_warmup must be a fraction of the run in [0, 1), got {distill_warmup!r}")
        self.num_random = num_random
        self.distill = bool(distill)
        self.student_weight = float(student_weight)
        self.distill_warmup = float(distill_warmup)
        self._distill_start = 0  # first step with distillation; set from the run's length

    def bind_schedule(self, plan: PhasePlan) -> None:
        self._distill_start = int(round(self.distill_warmup * plan.total_steps))

    def describe(self) -> str:
        if not self.distill:
            return "sandwich rule, every subnet on the labels"
        if not self.distill_warmup:
            return "sandwich rule, in-place distillation"
        return f"sandwich rule, labels for the first {self.distill_warmup:.0%} of the steps, then in-place distillation"

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        w = self.student_weight
        distill = self.distill and step >= self._distill_start

        def student(arch: Arch) -> SubnetTask:
            return (SubnetTask.distill(arch, w, regularize=False) if distill
                    else SubnetTask(arch, w, 0.0, regularize=False))

        tasks = [SubnetTask.labels(space.largest(), is_teacher=distill, regularize=True)]
        tasks += [student(space.sample(derive_rng(seed, "subnet", step, k)))
                  for k in range(1, self.num_random + 1)]
        tasks.append(student(space.smallest()))
        return tasks


class FixedArchSampling(SamplingStrategy):
    """Always the same arch on the labels: ``"largest"``, ``"smallest"`` or an arch dict.

    Stand-alone training of one arch uses it, and so do the hybrid space's mixed modes, where the
    supernet itself draws each layer's op and the arch only sets the widths.
    """

    name = "fixed"

    def __init__(self, arch: Union[str, Arch] = "largest") -> None:
        if not (arch in ("largest", "smallest") or isinstance(arch, dict)):
            raise ConfigError(f"fixed sampling takes arch='largest', 'smallest' or an arch dict, got {arch!r}")
        self.arch = arch
        self._resolved: Optional[Arch] = None

    def bind(self, space) -> None:
        if self.arch == "largest":
            self._resolved = space.largest()
        elif self.arch == "smallest":
            self._resolved = space.smallest()
        else:
            self._resolved = space.validate(self.arch)

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        if self._resolved is None:
            self.bind(space)
        return [SubnetTask.labels(self._resolved)]


SAMPLING_STRATEGIES: Registry[Callable[..., SamplingStrategy]] = Registry(
    "sampling strategy", lazy={"progressive_shrinking": "raynas.training.progressive",
                               "ofa": "raynas.training.progressive",
                               "preferred": "raynas.training.preferred",
                               "prenas": "raynas.training.preferred",
                               "fair": "raynas.training.fair",
                               "fairnas": "raynas.training.fair",
                               "isomorphic": "raynas.training.isomorphic",
                               "deiso": "raynas.training.isomorphic",
                               "few_shot": "raynas.training.few_shot",
                               "fewshot": "raynas.training.few_shot"})
SAMPLING_STRATEGIES.register("uniform", UniformSampling)
SAMPLING_STRATEGIES.register("spos", UniformSampling)
SAMPLING_STRATEGIES.register("sandwich", SandwichSampling)
SAMPLING_STRATEGIES.register("fixed", FixedArchSampling)


def register_sampling_strategy(name: str, factory: Callable[..., SamplingStrategy]) -> None:
    """Make a sampling strategy available by name (a name registered again is replaced)."""
    SAMPLING_STRATEGIES.register(name, factory, replace=True)


def list_sampling_strategies() -> List[str]:
    return SAMPLING_STRATEGIES.names()


def make_sampling_strategy(name: str, **options: Any) -> SamplingStrategy:
    return SAMPLING_STRATEGIES.create(name, **options)


def resolved_sampling_options(name: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """``options`` with every default of strategy ``name`` filled in: what a record should keep,
    so that it still says what was trained after a default changes."""
    signature = inspect.signature(SAMPLING_STRATEGIES.get(name))
    try:
        bound = signature.bind_partial(**options)
    except TypeError as exc:
        raise ConfigError(f"sampling strategy {name!r}: {exc}") from None
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items()
            if signature.parameters[k].kind is not inspect.Parameter.VAR_KEYWORD}
