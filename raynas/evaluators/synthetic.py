"""Cheap evaluators without a model, for testing orchestration and schedulers.

:class:`ScoreFidelityEvaluator` reports a space's analytic ``score`` (the ``synthetic`` space has
one) at several fidelities whose gap to the final score closes linearly, so low fidelities rank
archs as the final one does -- a stand-in for fine-tuning epochs. :class:`SleepEvaluator`
sleeps a fixed time per arch and reports a hash-derived score: it measures how busy an
orchestration keeps its workers.
"""
from __future__ import annotations

import hashlib
import time
from typing import Iterator, List, Sequence

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator, Metrics


class ScoreFidelityEvaluator(Evaluator):
    """``score`` at fidelity k of ``levels``: ``space.score(arch) - gap * (levels - k)``."""

    metrics = ("score",)
    cost_per_arch_s = 1e-5   # an analytic score

    def __init__(self, space, levels: int = 4, gap: float = 0.5) -> None:
        if not callable(getattr(space, "score", None)):
            raise ConfigError(f"space '{space.name}' has no analytic score(arch); use the 'synthetic' space")
        if levels < 1:
            raise ConfigError(f"levels must be >= 1, got {levels}")
        self.space, self.levels, self.gap = space, int(levels), float(gap)

    @property
    def num_fidelities(self) -> int:
        return self.levels

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        return [{"score": self.space.score(a)} for a in archs]

    def evaluate_fidelities(self, arch: Arch) -> Iterator[Metrics]:
        final = self.space.score(arch)
        for level in range(1, self.levels + 1):
            yield {"score": final - self.gap * (self.levels - level)}


class SleepEvaluator(Evaluator):
    """Sleeps about ``delay_s`` per arch (like a device busy evaluating) and reports ``score`` in
    [0, 1) derived from the arch id, so strategies still see distinct values.

    ``jitter``: each arch sleeps ``delay_s * (1 + jitter * v)``, ``v`` in [-1, 1) derived from
    its id (evaluations of different archs take different times, the same arch always the
    same); ``slowdown`` multiplies every sleep (a straggler: a slower device or node)."""

    metrics = ("score",)

    def __init__(self, delay_s: float, jitter: float = 0.0, slowdown: float = 1.0) -> None:
        if delay_s < 0:
            raise ConfigError(f"delay_s must be >= 0, got {delay_s}")
        if not 0.0 <= jitter <= 1.0:
            raise ConfigError(f"jitter must be in [0, 1], got {jitter}")
        if slowdown <= 0:
            raise ConfigError(f"slowdown must be > 0, got {slowdown}")
        self.delay_s, self.jitter, self.slowdown = float(delay_s), float(jitter), float(slowdown)
        self.cost_per_arch_s = self.delay_s * self.slowdown   # the mean sleep (jitter is symmetric)

    def delay(self, arch: Arch) -> float:
        """Seconds this evaluator sleeps for ``arch``."""
        digest = hashlib.sha256(arch_id(arch).encode()).hexdigest()   # not the score's digits
        v = int(digest[:8], 16) / 16 ** 8 * 2.0 - 1.0
        return self.delay_s * self.slowdown * (1.0 + self.jitter * v)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        out = []
        for arch in archs:
            time.sleep(self.delay(arch))
            out.append({"score": int(arch_id(arch)[:8], 16) / 16 ** 8})
        return out
