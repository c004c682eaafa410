"""How many archs one Tune trial carries when the user gives no ``batch_size``.

A Tune trial costs tens of milliseconds of orchestration (scheduling, a result round-trip,
callbacks: ~30-40 ms on a 2-core machine) whatever it evaluates, so a table lookup (~10 us)
one arch per trial spends >99% of the search in Tune. The batch is sized so a trial lasts about
:data:`TARGET_TRIAL_SECONDS` of evaluation:

1. an evaluator that states a batch size (``preferred_batch_size``: a pool sizes its batch from
   its actors, a fine-tuning evaluator takes one arch per trial) keeps it;
2. otherwise its cost per arch is what it declares (``cost_per_arch_s``: a table lookup is
   ~free, a sleeping test evaluator sleeps) or, undeclared, what a probe measures: a few archs
   sampled from the space with the search's seed, evaluated in the driver before Tune starts
   (stopping early once a probe takes longer than the target);
3. the batch is the largest power of two whose evaluation fits the target, at most
   :data:`MAX_ADAPTIVE_BATCH`, and at most the budget shared among the ``max_concurrent``
   slots (so every slot gets work), and at least 1.

The choice is recorded in ``search.json`` (``batch_size`` and ``batch_sizing``) and a resumed
search uses the recorded value, so a resume continues exactly. A measured cost varies with the
machine's load, so two fresh searches of a mid-cost evaluator may pick different batch sizes
(and a population strategy then proposes differently): pass ``batch_size=`` to fix it.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, Optional, Tuple

from raynas.rng import derive_rng

#: seconds of evaluation one adaptively sized trial aims at (Tune's per-trial cost is ~35 ms)
TARGET_TRIAL_SECONDS = 1.0
#: the largest adaptive batch: bigger batches save little more Tune time, and a searcher
#: proposes a whole batch from one state, so learning strategies adapt more coarsely
MAX_ADAPTIVE_BATCH = 512
#: archs a probe evaluates at most, and the time after which it stops early
PROBE_ARCHS = 4
PROBE_SECONDS = 0.5
#: what an evaluator gets that states nothing and cannot be probed (the old default)
FALLBACK_BATCH = 8


def batch_for_cost(cost_per_arch_s: float, budget: int, max_concurrent: int,
                   target_s: float = TARGET_TRIAL_SECONDS, max_batch: int = MAX_ADAPTIVE_BATCH) -> int:
    """The largest power of two ``b`` with ``b * cost <= target`` (at least 1, at most
    ``max_batch`` and the budget's share per concurrent slot, rounded down to a power of two)."""
    ideal = max_batch if cost_per_arch_s <= target_s / max_batch else max(1, int(target_s / cost_per_arch_s))
    share = max(1, math.ceil(int(budget) / max(1, int(max_concurrent))))
    return _floor_pow2(min(ideal, max_batch, share))


def probe_cost(evaluator: Any, space: Any, seed: int, archs: int = PROBE_ARCHS,
               max_seconds: float = PROBE_SECONDS) -> Optional[float]:
    """Seconds per arch of ``evaluator`` on archs sampled from ``space`` (seeded by ``seed``),
    evaluated one at a time in this process; None when an evaluation raises (then nothing is
    known about its cost). The first evaluation is not counted when others follow: it pays for
    lazy loading (a table read, a model built) that a trial's actor pays once."""
    from raynas.evaluators.batch import evaluate_batch

    rng = derive_rng(seed, "batch-probe")
    times = []
    for _ in range(max(1, archs)):
        arch = space.validate(space.sample(rng))
        start = time.perf_counter()
        row = evaluate_batch(evaluator, [arch])[0]
        times.append(time.perf_counter() - start)
        if "error" in row:
            return None
        if sum(times) > max_seconds:
            break
    steady = times[1:] or times
    return float(sorted(steady)[len(steady) // 2])


def resolve_batch_size(evaluator: Any, space: Any, budget: int, max_concurrent: int,
                       seed: int) -> Tuple[int, Dict[str, Any]]:
    """``(batch size, how it was chosen)`` for an evaluator when the user gave none (see the
    module docstring); the second is plain JSON for ``search.json``."""
    stated = getattr(evaluator, "preferred_batch_size", None)
    if stated is not None:
        return int(stated), {"source": "evaluator"}
    cost, source = getattr(evaluator, "cost_per_arch_s", None), "declared"
    if cost is None:
        cost, source = probe_cost(evaluator, space, seed), "probe"
    if cost is None:
        return FALLBACK_BATCH, {"source": "fallback", "reason": "the probe evaluation failed"}
    batch = batch_for_cost(float(cost), budget, max_concurrent)
    return batch, {"source": source, "cost_per_arch_s": float(cost), "target_trial_s": TARGET_TRIAL_SECONDS,
                   "max_batch": MAX_ADAPTIVE_BATCH}


def _floor_pow2(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)
