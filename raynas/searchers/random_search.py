"""Random search: uniform samples of the space (the baseline every strategy must beat)."""
from __future__ import annotations

from raynas.arch import Arch
from raynas.searchers.base import ArchSearcher


class RandomSearcher(ArchSearcher):
    """Uniformly random archs (constraints enforced by rejection, no duplicates)."""

    strategy_name = "random"

    def propose(self) -> Arch:
        return self.space.sample(self.rng)
