"""Grid search: every distinct arch of a small space, once (``space.enumerate``).

The order is the space's enumeration order, or a seeded permutation of it (``shuffle=True``), so
a budget smaller than the space still covers it evenly. Archs equivalent to one already proposed
are skipped by the base; the search ends when the grid runs out.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.searchers.base import ArchSearcher


class GridSearcher(ArchSearcher):
    """Exhaustive enumeration of a space of at most ``limit`` decision combinations."""

    strategy_name = "grid"
    random_fallback = False

    def __init__(self, shuffle: bool = False, limit: int = 100_000) -> None:
        super().__init__()
        if limit < 1:
            raise ConfigError(f"grid limit must be positive, got {limit}")
        self.shuffle = bool(shuffle)
        self.limit = int(limit)
        self.grid: List[Arch] = []
        self.position = 0

    def on_setup(self) -> None:
        # space.enumerate raises a ConfigError naming the size when the space is too large
        self.grid = list(self.space.enumerate(limit=self.limit))
        if self.shuffle:
            # a permutation from the searcher's own seed (a separate stream from self.rng)
            order = np.random.default_rng([self.seed, 0x6121D]).permutation(len(self.grid))
            self.grid = [self.grid[i] for i in order]

    def propose(self) -> Optional[Arch]:
        if self.position >= len(self.grid):
            return None
        arch = self.grid[self.position]
        self.position += 1
        return arch

    @property
    def size(self) -> int:
        return len(self.grid)

    def get_strategy_state(self) -> Dict[str, Any]:
        # the grid itself is rebuilt from the space and seed; only the position is state
        return {"position": self.position, "size": len(self.grid)}

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        if int(state["size"]) != len(self.grid):
            raise ConfigError(f"grid state was saved for a grid of {state['size']} archs, this space "
                              f"enumerates {len(self.grid)}; restore into the same space")
        self.position = int(state["position"])
