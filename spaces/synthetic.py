"""A tiny synthetic space with a closed-form objective, for fast tests of search strategies.

Each of ``num_layers`` layers picks one of ``num_choices`` ops. ``score(arch)`` is a fixed
random additive function plus pairwise interaction terms drawn from ``seed``, so strategies
must exploit structure (not just luck) to find the optimum quickly.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np

from raynas.arch import Arch
from raynas.errors import ArchError
from raynas.registry import register_space
from raynas.space import Decision, SearchSpace, require_choice, require_mapping


@register_space("synthetic")
class SyntheticSpace(SearchSpace):
    """Synthetic layers x ops space with an analytic score (no model), for testing strategies."""

    def __init__(self, num_layers: int = 8, num_choices: int = 4, seed: int = 0) -> None:
        super().__init__(num_layers=num_layers, num_choices=num_choices, seed=seed)
        self.num_layers, self.num_choices = int(num_layers), int(num_choices)
        rng = np.random.default_rng(seed)
        self._unary = rng.normal(size=(self.num_layers, self.num_choices))
        self._pair = 0.5 * rng.normal(size=(self.num_layers - 1, self.num_choices, self.num_choices))
        self._cost = rng.uniform(1.0, 10.0, size=(self.num_layers, self.num_choices))

    def _make_decisions(self) -> List[Decision]:
        return [Decision(f"op{i}", tuple(range(self.num_choices))) for i in range(self.num_layers)]

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        return self.validate({"ops": [values[f"op{i}"] for i in range(self.num_layers)]})

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        ops = self.validate(arch)["ops"]
        return {f"op{i}": op for i, op in enumerate(ops)}

    def validate(self, arch: Arch) -> Arch:
        arch = require_mapping(arch, self.name)
        extra = set(arch) - {"ops"}
        if extra:
            raise ArchError(sorted(extra)[0], arch[sorted(extra)[0]], ["ops"], space=self.name,
                            hint="unknown field")
        ops = arch.get("ops")
        if not isinstance(ops, (list, tuple)) or len(ops) != self.num_layers:
            raise ArchError("ops", ops, f"a list of {self.num_layers} op indices", space=self.name)
        allowed = tuple(range(self.num_choices))
        return {"ops": [require_choice(f"ops[{i}]", op, allowed, self.name) for i, op in enumerate(ops)]}

    def cost(self, arch: Arch) -> Dict[str, float]:
        ops = self.validate(arch)["ops"]
        return {"params": float(sum(self._cost[i, op] for i, op in enumerate(ops)))}

    def score(self, arch: Arch) -> float:
        """The analytic objective (higher is better)."""
        ops = self.validate(arch)["ops"]
        value = sum(self._unary[i, op] for i, op in enumerate(ops))
        value += sum(self._pair[i, ops[i], ops[i + 1]] for i in range(self.num_layers - 1))
        return float(value)

    def optimum(self) -> float:
        """Exact maximum of ``score`` by dynamic programming over the chain."""
        best = self._unary[0].copy()
        for i in range(1, self.num_layers):
            best = np.max(best[:, None] + self._pair[i - 1], axis=0) + self._unary[i]
        return float(best.max())
