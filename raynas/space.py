"""The ``SearchSpace`` interface: decisions, canonical archs and every search operator.

A space declares flat categorical decisions (for RL, Optuna and predictors) and owns all
operations on archs, so strategies never see a model. Subclasses define five methods
(``decisions``, ``from_decisions``, ``to_decisions``, ``validate``, ``cost``); the search
operators below are generic over the decisions and may be overridden where a space knows better.
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from raynas.arch import Arch, arch_id, canonical
from raynas.errors import ArchError, ConfigError
from raynas.rng import choice

MAX_OPERATOR_ATTEMPTS = 64


@dataclass(frozen=True)
class Decision:
    """One categorical decision of a space; ``choices`` go from smallest to largest cost."""

    name: str
    choices: tuple

    def __post_init__(self) -> None:
        if not self.choices:
            raise ConfigError(f"decision '{self.name}' has no choices")
        object.__setattr__(self, "choices", tuple(self.choices))

    def index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if same_choice(c, value):
                return i
        raise ArchError(self.name, value, self.choices)


class SearchSpace(ABC):
    """A family of architectures and the operators a search needs.

    Archs with fewer active layers (e.g. a shallower stage) simply lack those layers'
    decisions: ``to_decisions`` returns ``None`` for them and ``from_decisions`` ignores them.
    """

    #: registry name, set by :func:`raynas.create_space`; used to rebuild the space elsewhere
    name: str = "anonymous"
    #: bump when ``encode`` changes, so saved predictors refuse a stale encoding
    encoding_version: str = "1"

    def __init__(self, **options: Any) -> None:
        self.options: Dict[str, Any] = canonical(options)
        self._decision_cache: Optional[List[Decision]] = None

    # ---------------------------------------------------------------- defined by each space
    @abstractmethod
    def _make_decisions(self) -> List[Decision]:
        """All decisions of the largest architecture, in a fixed order."""

    @abstractmethod
    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        """Build the canonical arch from decision values (inactive ones are ignored)."""

    @abstractmethod
    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        """Decision values of an arch; ``None`` for decisions its depth switches off."""

    @abstractmethod
    def validate(self, arch: Arch) -> Arch:
        """Return the canonical form of ``arch`` or raise :class:`ArchError`."""

    @abstractmethod
    def cost(self, arch: Arch) -> Dict[str, float]:
        """Analytic cost metrics (at least ``params``; ``macs``/``flops`` where defined)."""

    def build_supernet(self, num_classes: int, **kwargs: Any):
        raise ConfigError(f"space '{self.name}' has no weight-sharing supernet; "
                          "evaluate it with a tabular, proxy or function evaluator instead")

    def build_static(self, arch: Arch, num_classes: int):
        """An untrained standalone module for ``arch`` (the structure ``export`` fills)."""
        raise ConfigError(f"space '{self.name}' cannot build standalone models")

    def input_resolution(self, arch: Arch) -> Optional[int]:
        """Input side length the arch expects, or None if it takes the data as they come."""
        return None

    # ---------------------------------------------------------------- derived, generic
    def decisions(self) -> List[Decision]:
        if self._decision_cache is None:
            self._decision_cache = list(self._make_decisions())
            names = [d.name for d in self._decision_cache]
            if len(set(names)) != len(names):
                raise ConfigError(f"space '{self.name}' declares duplicate decision names")
        return self._decision_cache

    def spec(self) -> Dict[str, Any]:
        """What :func:`raynas.space_from_spec` needs to rebuild this exact space: its registry
        name and options (plain JSON; never a module to import)."""
        return {"name": self.name, "options": dict(self.options)}

    def equivalence_key(self, arch: Arch) -> str:
        """Equal for archs that compute the same function (e.g. isomorphic cells), so a search
        evaluates one of them only; spaces with such symmetries override it. Default: ``arch_id``."""
        return arch_id(self.validate(arch))

    def is_valid(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except (ArchError, TypeError):
            return False
        return True

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random choice per decision (inactive ones are dropped)."""
        return self.from_decisions({d.name: choice(rng, d.choices) for d in self.decisions()})

    def smallest(self) -> Arch:
        return self.from_decisions({d.name: d.choices[0] for d in self.decisions()})

    def largest(self) -> Arch:
        return self.from_decisions({d.name: d.choices[-1] for d in self.decisions()})

    def _filled(self, values: Mapping[str, Any], rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        """Give inactive decisions a value (random, or the first choice without an rng)."""
        out = dict(values)
        for d in self.decisions():
            if out.get(d.name) is None:
                out[d.name] = choice(rng, d.choices) if rng is not None else d.choices[0]
        return out

    def mutate(self, arch: Arch, rng: np.random.Generator, prob: Optional[float] = None) -> Arch:
        """Resample each active decision with probability ``prob`` (default 1/#active);
        always returns an arch different from ``arch`` when the space allows one."""
        arch = self.validate(arch)
        values = self.to_decisions(arch)
        active = [d for d in self.decisions() if values.get(d.name) is not None and len(d.choices) > 1]
        if not active:
            return arch
        p = (1.0 / len(active)) if prob is None else float(prob)
        parent = arch_id(arch)
        child = arch
        for _ in range(MAX_OPERATOR_ATTEMPTS):
            new = self._filled(values, rng)
            changed = [d for d in active if rng.random() < p]
            if not changed:
                changed = [choice(rng, active)]
            for d in changed:
                new[d.name] = choice(rng, [c for c in d.choices if c != values[d.name]])
            child = self.from_decisions(new)
            if arch_id(child) != parent:
                return child
        return child

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each decision from either parent with equal probability."""
        va, vb = self.to_decisions(self.validate(a)), self.to_decisions(self.validate(b))
        child: Dict[str, Any] = {}
        for d in self.decisions():
            x, y = va.get(d.name), vb.get(d.name)
            if x is None and y is None:
                child[d.name] = choice(rng, d.choices)
            elif x is None or y is None:
                child[d.name] = y if x is None else x
            else:
                child[d.name] = x if rng.random() < 0.5 else y
        return self.from_decisions(child)

    def neighbors(self, arch: Arch) -> List[Arch]:
        """Every arch that differs from ``arch`` in exactly one active decision."""
        arch = self.validate(arch)
        values = self.to_decisions(arch)
        base = self._filled(values, None)
        seen, out = {arch_id(arch)}, []
        for d in self.decisions():
            if values.get(d.name) is None:
                continue
            for c in d.choices:
                if c == values[d.name]:
                    continue
                n = self.from_decisions({**base, d.name: c})
                if arch_id(n) not in seen:
                    seen.add(arch_id(n))
                    out.append(n)
        return out

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every distinct arch (for grid search on small spaces)."""
        decs = self.decisions()
        total = int(np.prod([len(d.choices) for d in decs], dtype=np.float64))
        if total > limit:
            raise ConfigError(f"space '{self.name}' has up to {total:,} decision combinations, "
                              f"over the grid limit of {limit:,}; use a sampling strategy instead")
        seen = set()
        for combo in itertools.product(*(d.choices for d in decs)):
            arch = self.from_decisions(dict(zip((d.name for d in decs), combo)))
            key = arch_id(arch)
            if key not in seen:
                seen.add(key)
                yield arch

    @property
    def encoding_size(self) -> int:
        return sum(len(d.choices) for d in self.decisions())

    def encode(self, arch: Arch) -> np.ndarray:
        """Fixed-length one-hot vector per decision; switched-off decisions are all zeros."""
        values = self.to_decisions(self.validate(arch))
        out = np.zeros(self.encoding_size, dtype=np.float32)
        offset = 0
        for d in self.decisions():
            v = values.get(d.name)
            if v is not None:
                out[offset + d.index(v)] = 1.0
            offset += len(d.choices)
        return out

    def describe(self, arch: Arch) -> str:
        """A short human-readable summary for tables."""
        values = self.to_decisions(self.validate(arch))
        return " ".join(f"{k}={v}" for k, v in values.items() if v is not None)

    def to_timm(self, model, config):
        """``(timm model, JSON config)`` of an exported static subnet ``model`` with its export
        ``config``, for spaces whose subnets are timm architectures (see
        :mod:`raynas.export_formats`); the default has none."""
        raise NotImplementedError

    #: how to read :meth:`describe`'s compact form (shown by ``raynas spaces NAME``); empty when
    #: it is self-explanatory (``decision=value`` pairs)
    notation: str = ""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}<{self.name}>({opts})"


def require_mapping(arch: Any, space: str) -> Dict[str, Any]:
    """First check of every ``validate``: an arch is a dict."""
    if not isinstance(arch, Mapping):
        raise ArchError("<arch>", arch, "a dict (JSON object)", space=space)
    return dict(arch)


def require_json_mapping(arch: Any, space: str) -> Dict[str, Any]:
    """:func:`require_mapping` plus the canonical JSON form (plain ints, lists, finite floats):
    a NaN, a numpy object or a non-string key is an ArchError, not a TypeError further down."""
    arch = require_mapping(arch, space)
    try:
        return canonical(arch)
    except TypeError as exc:
        raise ArchError("<arch>", arch, "a JSON object of plain values", space=space, hint=str(exc)) from None


def same_choice(allowed: Any, value: Any) -> bool:
    """Equality for categorical values: 4 == 4.0, but True is not 1 and "3" is not 3."""
    if isinstance(allowed, bool) or isinstance(value, bool):
        return type(allowed) is type(value) and allowed == value
    if isinstance(allowed, (int, float)) and isinstance(value, (int, float)):
        return allowed == value
    return type(allowed) is type(value) and allowed == value


def require_choice(field: str, value: Any, allowed: Sequence[Any], space: str) -> Any:
    """Check one categorical value and return the allowed value's canonical type."""
    if type(value) is str:   # the common case (op names), checked without same_choice's calls
        for a in allowed:
            if type(a) is str and a == value:
                return a
        raise ArchError(field, value, tuple(allowed), space=space)
    if type(value) is int:   # op indices: same_choice's answer for an int, inlined (a sweep's hot loop)
        for a in allowed:
            if not isinstance(a, bool) and isinstance(a, (int, float)) and a == value:
                return a
        raise ArchError(field, value, tuple(allowed), space=space)
    for a in allowed:
        if same_choice(a, value):
            return a
    raise ArchError(field, value, tuple(allowed), space=space)
