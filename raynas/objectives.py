"""Objectives: which metrics a search optimises and in which direction."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Sequence, Tuple, Union

from raynas.errors import ConfigError, clip

MODES = ("max", "min")
# Directions that need no saying; anything else must be written "metric:max" or "metric:min".
_DEFAULT_MODES = {"accuracy": "max", "score": "max", "top1": "max", "params": "min", "macs": "min",
                  "flops": "min", "latency_ms": "min", "latency": "min"}


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric or any(c == ":" or c.isspace() for c in self.metric):
            raise ConfigError(f"objective metric {clip(self.metric, 80)} must be one metric name (no ':' or "
                              "spaces): write 'metric', 'metric:max' or 'metric:min'")
        if self.mode not in MODES:
            raise ConfigError(f"objective '{self.metric}': mode must be 'max' or 'min', got {clip(self.mode, 40)}")

    @property
    def sign(self) -> float:
        """+1 for max, -1 for min: ``sign * value`` is always 'higher is better'."""
        return 1.0 if self.mode == "max" else -1.0

    def better(self, a: float, b: float) -> bool:
        return self.sign * a > self.sign * b

    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def __str__(self) -> str:
        return f"{self.metric}:{self.mode}"


ObjectiveSpec = Union[str, Objective, Tuple[str, str], Mapping[str, str]]


def _default_mode(metric: str) -> str:
    if metric in _DEFAULT_MODES:
        return _DEFAULT_MODES[metric]
    if metric.startswith("lat") or metric.endswith("_ms"):
        return "min"
    raise ConfigError(f"objective '{metric}' needs a direction: write '{metric}:max' or '{metric}:min'")


def parse_objective(spec: ObjectiveSpec) -> Objective:
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        return Objective(str(spec[0]), str(spec[1]))
    if isinstance(spec, str):
        if ":" in spec:
            metric, mode = spec.rsplit(":", 1)
            return Objective(metric.strip(), mode.strip())
        return Objective(spec.strip(), _default_mode(spec.strip()))
    raise ConfigError(f"cannot read objective {clip(spec)}: use 'metric', 'metric:max' or 'metric:min'")


def parse_objectives(specs: Union[ObjectiveSpec, Iterable[ObjectiveSpec], None]) -> List[Objective]:
    """Accepts 'accuracy', ['accuracy:max', 'latency_ms:min'], {'accuracy': 'max'}, Objective(...)."""
    if specs is None:
        return [Objective("accuracy", "max")]
    if isinstance(specs, (str, Objective)) or (isinstance(specs, tuple) and len(specs) == 2
                                               and all(isinstance(s, str) for s in specs)
                                               and specs[1] in MODES):
        specs = [specs]  # type: ignore[list-item]
    if isinstance(specs, Mapping):
        specs = list(specs.items())
    if not isinstance(specs, Iterable):
        raise ConfigError(f"cannot read objectives {clip(specs)}: give e.g. 'accuracy' or ['accuracy:max', 'macs:min']")
    out = [parse_objective(s) for s in specs]  # type: ignore[union-attr]
    if not out:
        raise ConfigError("at least one objective is needed")
    names = [o.metric for o in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives repeat a metric: {names}")
    return out


def objective_names(objectives: Sequence[Objective]) -> List[str]:
    return [o.metric for o in objectives]


def scalar_fitness(metrics: Mapping[str, Any], objective: Objective) -> float:
    """'Higher is better' fitness of one metrics dict (worst value when missing or not finite)."""
    value = metrics.get(objective.metric) if metrics else None
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -math.inf
    return objective.sign * value if math.isfinite(value) else -math.inf
