"""Run a strategy in this process, without Tune: for cheap evaluators (a surrogate predictor, a
table) whose evaluations take microseconds, where a Tune trial per batch would cost more than
the search itself.

The strategy is the very same :class:`ArchSearcher` that :func:`raynas.search` drives (same
proposals, dedup, constraints, state); this driver speaks the same ``suggest`` /
``on_trial_complete`` protocol with one trial at a time, completed immediately.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from raynas.arch import canonical_json
from raynas.constraints import CostFn
from raynas.evaluators.base import Evaluator
from raynas.evaluators.batch import evaluate_batch
from raynas.search_config import SearchConfig

#: archs per batch when none is given (the searcher observes after each batch)
DEFAULT_BATCH_SIZE = 64


def run_inline(space, evaluator: Evaluator, strategy: Any = "evolution",
               num_samples: int = 100, constraints: Any = None, objectives: Any = None, *,
               strategy_options: Optional[Mapping[str, Any]] = None, batch_size: Optional[int] = None,
               cost_functions: Sequence[CostFn] = (), seed: int = 0, check_feasible: bool = True):
    """Search ``space`` (a space, or a whole :class:`~raynas.search_config.SearchConfig`) with
    ``strategy`` on ``evaluator`` in-process; returns a :class:`raynas.results.SearchResult`
    without a directory (rows in evaluation order, with the cost model's metrics, like
    :func:`raynas.search`'s table). With the same configuration and batch size, and one trial
    in flight there, it proposes exactly what :func:`raynas.search` proposes."""
    import pandas as pd

    from raynas.results import SearchResult

    if isinstance(space, SearchConfig):
        config = space
    else:
        config = SearchConfig.create(space, strategy, num_samples, constraints, objectives,
                                     strategy_options=strategy_options, batch_size=batch_size, seed=seed,
                                     cost_functions=cost_functions, check_feasible=check_feasible)
    config = config.with_batching(config.batch_size or DEFAULT_BATCH_SIZE, 1)
    searcher = config.make_searcher()
    cost_model = config.cost_model
    rows: List[Dict[str, Any]] = []
    trial = 0
    while True:
        config_of_trial = searcher.suggest(f"inline_{trial}")
        if not isinstance(config_of_trial, dict):  # FINISHED, or nothing to propose with nothing in flight
            break
        archs, ids = config_of_trial["archs"], config_of_trial["arch_ids"]
        start = time.perf_counter()
        batch = evaluate_batch(evaluator, archs)
        seconds = (time.perf_counter() - start) / max(1, len(archs))
        for arch, key, metrics in zip(archs, ids, batch):
            metrics["arch_id"] = key
            row = {**cost_model(arch), "eval_seconds": seconds, **metrics, "arch": canonical_json(arch),
                   "order": len(rows), "trial_id": f"inline_{trial}", "finished_at": time.time()}
            rows.append(row)
        searcher.on_trial_complete(f"inline_{trial}", {"batch": batch})
        trial += 1
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["order", "arch_id", "arch", "error"])
    if "error" not in df:
        df["error"] = None
    if "finished_at" in df:
        from raynas.results import as_timestamps
        df["finished_at"] = as_timestamps(df["finished_at"])
    front = [c for c in ("order", "arch_id", "arch", "trial_id", "error", "eval_seconds", "finished_at") if c in df]
    df = df[front + sorted(c for c in df.columns if c not in front)]
    meta = {**config.to_json(), "inline": True}
    return SearchResult(df, config.objectives, None, meta)
