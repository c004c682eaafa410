"""Restricted sub-spaces: sample only some dimensions of a space, the others at their largest.

A *dimension* groups the flat decisions of a space that mean the same thing in every layer: the
decision ``s2.b1.kernel`` belongs to dimension ``kernel``, ``s0.depth`` to ``depth``,
``resolution`` to ``resolution`` (the last dotted component of the decision name, unless the
space defines ``decision_dimension(name)``). OFA progressive shrinking unlocks dimensions phase by
phase; PreNAS groups candidates by dimension values.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.rng import choice
from raynas.space import SearchSpace, same_choice


def decision_dimension(space: SearchSpace, name: str) -> str:
    """The dimension a decision belongs to."""
    custom = getattr(space, "decision_dimension", None)
    return custom(name) if callable(custom) else name.rsplit(".", 1)[-1]


def space_dimensions(space: SearchSpace) -> Dict[str, tuple]:
    """Every dimension of the space and the union of its decisions' choices (in cost order)."""
    out: Dict[str, list] = {}
    for d in space.decisions():
        values = out.setdefault(decision_dimension(space, d.name), [])
        for c in d.choices:
            if not any(same_choice(v, c) for v in values):
                values.append(c)
    return {k: tuple(v) for k, v in out.items()}


class SubSpace:
    """The archs of ``space`` whose locked dimensions take their largest choice.

    ``unlocked`` maps a dimension to the choices it may take (``None``: all of them); every other
    dimension is fixed at each decision's largest choice.
    """

    def __init__(self, space: SearchSpace, unlocked: Mapping[str, Optional[Sequence[Any]]]) -> None:
        dims = space_dimensions(space)
        unknown = sorted(set(unlocked) - set(dims))
        if unknown:
            raise ConfigError(f"space '{space.name}' has no dimension(s) {unknown}; its dimensions "
                              f"are {sorted(dims)}")
        self.space = space
        self.unlocked: Dict[str, Optional[tuple]] = {}
        for dim, allowed in unlocked.items():
            if allowed is None:
                self.unlocked[dim] = None
                continue
            if isinstance(allowed, (str, bytes)) or not isinstance(allowed, (list, tuple)) or not allowed:
                raise ConfigError(f"choices for dimension '{dim}' must be a non-empty list, got {allowed!r}")
            bad = [v for v in allowed if not any(same_choice(c, v) for c in dims[dim])]
            if bad:
                raise ConfigError(f"dimension '{dim}' of space '{space.name}' has no choice(s) {bad}; "
                                  f"its choices are {list(dims[dim])}")
            self.unlocked[dim] = tuple(allowed)
        self._options: List[tuple] = []
        for d in space.decisions():
            dim = decision_dimension(space, d.name)
            if dim not in self.unlocked:
                self._options.append((d.name, (d.choices[-1],)))
                continue
            allowed = self.unlocked[dim]
            options = d.choices if allowed is None else tuple(
                c for c in d.choices if any(same_choice(c, a) for a in allowed))
            # a decision whose own choices miss every allowed value keeps its largest one
            self._options.append((d.name, options or (d.choices[-1],)))

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.space.from_decisions({name: choice(rng, options) for name, options in self._options})

    def largest(self) -> Arch:
        return self.space.from_decisions({name: options[-1] for name, options in self._options})

    def smallest(self) -> Arch:
        return self.space.from_decisions({name: options[0] for name, options in self._options})

    def contains(self, arch: Arch) -> bool:
        values = self.space.to_decisions(arch)
        for name, options in self._options:
            v = values.get(name)
            if v is not None and not any(same_choice(o, v) for o in options):
                return False
        return True


def dimension_value(space: SearchSpace, arch: Arch, name: str) -> Any:
    """A grouping key component: the arch's top-level field ``name`` if it has one (lists become
    tuples), else the sum of the active decisions of dimension ``name`` (e.g. total depth)."""
    if name in arch:
        value = arch[name]
        return tuple(value) if isinstance(value, list) else value
    values = space.to_decisions(arch)
    picked = [v for k, v in values.items()
              if v is not None and decision_dimension(space, k) == name]
    if not picked:
        raise ConfigError(f"cannot group by '{name}': archs of space '{space.name}' have no such "
                          f"field or dimension (dimensions: {sorted(space_dimensions(space))})")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in picked):
        return sum(picked)
    return tuple(picked)
