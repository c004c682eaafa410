"""Constraints on cost metrics (params, MACs, FLOPs, latency) checked before an arch is evaluated.

A :class:`CostModel` gives the metrics known without evaluation: the space's analytic
``cost`` plus any extra cost functions (e.g. a latency lookup table or a table column).
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError, InfeasibleConstraintError, clip

CostFn = Callable[[Arch], Mapping[str, float]]

_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*([kKmMgG]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


@dataclass(frozen=True)
class Constraint:
    """``min <= metric <= max`` (either bound may be None); strict bounds when ``strict``."""

    metric: str
    max: Optional[float] = None
    min: Optional[float] = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.max is None and self.min is None:
            raise ConfigError(f"constraint on '{self.metric}' has neither a min nor a max")

    def satisfied(self, metrics: Mapping[str, float]) -> bool:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return False
        le, ge = (operator.lt, operator.gt) if self.strict else (operator.le, operator.ge)
        if self.max is not None and not le(value, self.max):
            return False
        if self.min is not None and not ge(value, self.min):
            return False
        return True

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far outside the bound (0 when satisfied); relative to the bound's size."""
        value = float(metrics.get(self.metric, math.inf))
        over = 0.0
        if self.max is not None and value > self.max:
            over = (value - self.max) / max(abs(self.max), 1e-12)
        if self.min is not None and value < self.min:
            over = max(over, (self.min - value) / max(abs(self.min), 1e-12))
        return over

    def __str__(self) -> str:
        op_hi, op_lo = ("<", ">") if self.strict else ("<=", ">=")
        parts = []
        if self.min is not None:
            parts.append(f"{self.metric} {op_lo} {self.min:g}")
        if self.max is not None:
            parts.append(f"{self.metric} {op_hi} {self.max:g}")
        return " and ".join(parts)


ConstraintSpec = Union[str, Constraint, Mapping[str, Any]]


def parse_constraints(specs: Union[ConstraintSpec, Iterable[ConstraintSpec], None]) -> List[Constraint]:
    """Accepts 'flops<=200M', 'params < 1.5e6', {'flops': 2e8} (a max), Constraint(...), or lists."""
    if specs is None:
        return []
    if isinstance(specs, (str, Constraint)):
        specs = [specs]
    if isinstance(specs, Mapping):
        return [Constraint(str(k), max=_bound(k, v)) for k, v in specs.items()]
    if not isinstance(specs, Iterable):
        raise ConfigError(f"cannot read constraints {clip(specs)}: give a string like 'flops<=200M' or a list of them")
    out: List[Constraint] = []
    for spec in specs:  # type: ignore[union-attr]
        if isinstance(spec, Constraint):
            out.append(spec)
        elif isinstance(spec, Mapping):
            out.extend(parse_constraints(spec))
        elif isinstance(spec, str):
            m = _PATTERN.match(spec)
            if not m:
                raise ConfigError(f"cannot read constraint {clip(spec)}: write e.g. 'flops<=200M', "
                                  "'params<1.5e6' or 'latency_ms<=20' (suffixes k, M, G allowed)")
            metric, op, number, suffix = m.groups()
            try:
                value = float(number.replace("_", "")) * _SUFFIX[suffix.lower()]
            except ValueError as exc:
                raise ConfigError(f"constraint {clip(spec)}: {clip(number, 60)} is not a number") from exc
            strict = op in ("<", ">")
            out.append(Constraint(metric, max=value, strict=strict) if op.startswith("<")
                       else Constraint(metric, min=value, strict=strict))
        else:
            raise ConfigError(f"cannot read constraint {clip(spec)}")
    return out


def _bound(metric: Any, value: Any) -> float:
    try:
        bound = float(value)
    except (TypeError, ValueError):
        bound = math.nan
    if isinstance(value, bool) or math.isnan(bound):
        raise ConfigError(f"constraint on '{metric}': the limit must be a number, got {clip(value, 60)}")
    return bound


class NamedCost:
    """``fn(arch)`` reported as metric ``name``: ``fn`` returns a number, or a dict holding
    ``name`` (or a single value), e.g. a :class:`~raynas.hardware.LatencyLUT`."""

    def __init__(self, name: str, fn: Callable[[Arch], Any]) -> None:
        if not callable(fn):
            raise ConfigError(f"cost function for '{name}' must be callable arch -> number, got "
                              f"{type(fn).__name__}")
        self.name, self.fn = str(name), fn

    def __call__(self, arch: Arch) -> Dict[str, float]:
        value = self.fn(arch)
        if isinstance(value, Mapping):
            if self.name in value:
                value = value[self.name]
            elif len(value) == 1:
                value = next(iter(value.values()))
            else:
                raise ConfigError(f"cost function for '{self.name}' returned {sorted(value)}: return a number "
                                  f"or a dict with key '{self.name}'")
        return {self.name: float(value)}


def as_cost_functions(extra: Union[Sequence[CostFn], Mapping[str, Callable[[Arch], Any]], None]) -> List[CostFn]:
    """Cost functions from a list of ``arch -> {metric: value}`` callables, or a dict
    ``{metric: arch -> value}`` (``cost_functions={"latency_ms": lut}``)."""
    if extra is None:
        return []
    if isinstance(extra, Mapping):
        return [NamedCost(name, fn) for name, fn in extra.items()]
    if callable(extra):
        return [extra]
    out = list(extra)
    for fn in out:
        if not callable(fn):
            raise ConfigError(f"cost functions must be callables arch -> dict of metrics (or a dict "
                              f"{{metric: callable}}), got {type(fn).__name__}")
    return out


class CostModel:
    """Metrics known before evaluation: ``space.cost(arch)`` plus extra cost functions (a list,
    or a dict ``{metric: fn}``; see :func:`as_cost_functions`).

    Picklable as long as the space and the extra functions are.
    """

    def __init__(self, space, extra: Union[Sequence[CostFn], Mapping[str, Callable[[Arch], Any]], None] = ()) -> None:
        self.space = space
        self.extra = as_cost_functions(extra)

    def __call__(self, arch: Arch) -> Dict[str, float]:
        out = {k: float(v) for k, v in self.space.cost(arch).items()}
        for fn in self.extra:
            out.update({k: float(v) for k, v in fn(arch).items()})
        return out

    def metric_names(self) -> List[str]:
        return sorted(self(self.space.smallest()))


def satisfies(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> bool:
    return all(c.satisfied(metrics) for c in constraints)


def check_constraints_feasible(space, cost_model: CostModel, constraints: Sequence[Constraint],
                               rng: np.random.Generator, probes: int = 2000) -> None:
    """Fail fast, before any search starts, when no arch can satisfy the constraints.

    Every constraint must name a metric the cost model knows. Then the smallest and largest
    archs and ``probes`` random samples are tried; if none is feasible the error reports the
    best value reached for each constraint so the user can see how far off the limit is.
    """
    if not constraints:
        return
    known = set(cost_model(space.smallest()))
    for c in constraints:
        if c.metric not in known:
            raise ConfigError(f"constraint on '{c.metric}' cannot be checked before evaluation: the "
                              f"cost model knows {sorted(known)}. Add a cost function for it "
                              "(e.g. a latency lookup table) or constrain one of those metrics.")
    candidates = [space.smallest(), space.largest()]
    best: Dict[str, float] = {}
    for i in range(probes + 2):
        arch = candidates[i] if i < 2 else space.sample(rng)
        metrics = cost_model(arch)
        if satisfies(constraints, metrics):
            return
        for c in constraints:
            v = float(metrics[c.metric])
            if c.max is not None:
                best[c.metric] = min(best.get(c.metric, math.inf), v)
            else:
                best[c.metric] = max(best.get(c.metric, -math.inf), v)
    reached = ", ".join(f"{m} reaches {v:.4g} at best" for m, v in best.items())
    raise InfeasibleConstraintError(
        f"no architecture of space '{space.name}' satisfies {' and '.join(map(str, constraints))} "
        f"(tried the smallest, the largest and {probes} random archs; {reached}). "
        "Relax the limit or choose a smaller space.")
