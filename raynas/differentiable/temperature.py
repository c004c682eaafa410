"""Softmax temperature schedules for differentiable search: mixing weights are softmax(α / T).

A schedule maps the epoch ``e`` (0-based) of an ``E``-epoch search to the temperature used for
that whole epoch. ``constant`` is DARTS (T = 1); ``linear`` is TD-DARTS
(T_e = T0 - e·(T0 - T_end)/(E - 1): T0 at the first epoch, T_end at the last); ``exponential``
decays geometrically between the same end points. Every schedule is a small class with one
method, registered by name, and round-trips through a JSON-able spec.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Type, Union

from raynas.errors import ConfigError
from raynas.registry import Registry

SCHEDULES: Registry[Type["TemperatureSchedule"]] = Registry("temperature schedule")


def register_schedule(name: str) -> Callable[[Type["TemperatureSchedule"]], Type["TemperatureSchedule"]]:
    """Class decorator adding a schedule under ``name`` (``make_schedule(name, **options)``)."""
    def decorator(cls: Type["TemperatureSchedule"]) -> Type["TemperatureSchedule"]:
        SCHEDULES.register(name, cls)
        cls.name = name
        return cls
    return decorator


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"temperature option '{name}' must be a positive number, got {value!r}")
    return float(value)


class TemperatureSchedule(ABC):
    """``at(epoch, num_epochs) -> T`` for ``0 <= epoch < num_epochs``."""

    name = "abstract"

    @abstractmethod
    def _value(self, epoch: int, num_epochs: int) -> float:
        """The temperature of an in-range epoch."""

    def at(self, epoch: int, num_epochs: int) -> float:
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise ConfigError(f"num_epochs must be a positive int, got {num_epochs!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < num_epochs:
            raise ConfigError(f"epoch must be an int in 0..{num_epochs - 1}, got {epoch!r}")
        return float(self._value(epoch, num_epochs))

    def spec(self) -> Dict[str, Any]:
        """JSON-able ``{"name": ..., **options}`` that :func:`make_schedule` rebuilds."""
        # unset optional options (None) are left out: the spec of a default schedule stays short
        return {"name": self.name, **{k: v for k, v in asdict(self).items() if v is not None}}  # type: ignore[call-overload]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "name")
        return f"{self.name}({opts})"


@register_schedule("constant")
@dataclass(frozen=True, repr=False)
class ConstantTemperature(TemperatureSchedule):
    """The same temperature every epoch (``t=1`` is plain DARTS)."""

    t: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "t", _positive("t", self.t))

    def _value(self, epoch: int, num_epochs: int) -> float:
        return self.t


@dataclass(frozen=True, repr=False)
class _Decay(TemperatureSchedule):
    t0: float = 10.0
    t_end: float = 0.1
    #: optional floor: T = max(decayed T, t_floor) (a variant; the founding schedule has none)
    t_floor: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "t0", _positive("t0", self.t0))
        object.__setattr__(self, "t_end", _positive("t_end", self.t_end))
        if self.t_floor is not None:
            object.__setattr__(self, "t_floor", _positive("t_floor", self.t_floor))

    def _value(self, epoch: int, num_epochs: int) -> float:
        if num_epochs == 1:  # no room to decay: the single epoch explores at T0
            return self.t0
        value = self._decay(epoch / (num_epochs - 1))
        return value if self.t_floor is None else max(value, self.t_floor)

    @abstractmethod
    def _decay(self, progress: float) -> float:
        """Temperature at ``progress`` in [0, 1] (0: first epoch, 1: last epoch)."""


@register_schedule("linear")
@dataclass(frozen=True, repr=False)
class LinearTemperature(_Decay):
    """TD-DARTS: T_e = T0 - e·(T0 - T_end)/(E - 1), from T0 = 10 to T_end = 0.1 by default."""

    def _decay(self, progress: float) -> float:
        return self.t0 - progress * (self.t0 - self.t_end)


@register_schedule("exponential")
@dataclass(frozen=True, repr=False)
class ExponentialTemperature(_Decay):
    """T_e = T0 · (T_end / T0)^(e/(E - 1)): the same end points, a constant ratio per epoch."""

    def _decay(self, progress: float) -> float:
        return self.t0 * (self.t_end / self.t0) ** progress


ScheduleSpec = Union[str, Mapping[str, Any], TemperatureSchedule]


def list_schedules() -> Dict[str, str]:
    """Schedule name -> one-line description."""
    return SCHEDULES.describe()


def make_schedule(spec: ScheduleSpec = "constant", **options: Any) -> TemperatureSchedule:
    """A schedule from a name (``"linear"``, with options), a spec dict or a schedule.

    ``make_schedule("linear", t0=10, t_end=0.1)``; ``make_schedule({"name": "constant", "t": 1})``.
    """
    if isinstance(spec, TemperatureSchedule):
        if options:
            raise ConfigError("pass options with a schedule name, not with a schedule instance")
        return spec
    if isinstance(spec, Mapping):
        options = {**{k: v for k, v in spec.items() if k != "name"}, **options}
        spec = spec.get("name", "constant")
    schedule = SCHEDULES.get(spec)
    try:
        return schedule(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options {options} for temperature schedule '{spec}': {exc}") from exc
