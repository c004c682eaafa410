"""Run a strategy in this process, without Tune: for cheap evaluators (a surrogate predictor, a
table) whose evaluations take microseconds, where a Tune trial per batch would cost more than
the search itself.

The strategy is the very same :class:`ArchSearcher` that :func:`raynas.search` drives (same
proposals, dedup, constraints, state); this driver speaks the same ``suggest`` /
``on_trial_complete`` protocol with one trial at a time, completed immediately.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from raynas.arch import Arch, canonical_json
from raynas.constraints import CostFn, CostModel, check_constraints_feasible, parse_constraints
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator
from raynas.objectives import parse_objectives
from raynas.searchers import ArchSearcher, make_searcher


def run_inline(space, evaluator: Evaluator, strategy: Union[str, ArchSearcher] = "evolution",
               num_samples: int = 100, constraints: Any = None, objectives: Any = None, *,
               strategy_options: Optional[Mapping[str, Any]] = None, batch_size: int = 64,
               cost_functions: Sequence[CostFn] = (), seed: int = 0, check_feasible: bool = True):
    """Search ``space`` with ``strategy`` on ``evaluator`` in-process; returns a
    :class:`raynas.results.SearchResult` without a directory (rows in evaluation order, with the
    cost model's metrics, like :func:`raynas.search`'s table)."""
    import pandas as pd

    from raynas.results import SearchResult

    if int(num_samples) <= 0:
        raise ConfigError(f"num_samples must be a positive number of archs, got {num_samples}")
    objectives = parse_objectives(objectives)
    constraints = parse_constraints(constraints)
    cost_model = CostModel(space, cost_functions)
    if check_feasible:
        check_constraints_feasible(space, cost_model, constraints, np.random.default_rng(seed))
    searcher = make_searcher(strategy, strategy_options)
    searcher.setup(space, objectives, constraints=constraints, cost_model=cost_model, budget=int(num_samples),
                   batch_size=int(batch_size), max_concurrent=1, seed=seed)
    rows: List[Dict[str, Any]] = []
    trial = 0
    while True:
        config = searcher.suggest(f"inline_{trial}")
        if not isinstance(config, dict):  # FINISHED, or nothing to propose with nothing in flight
            break
        archs, ids = config["archs"], config["arch_ids"]
        start = time.perf_counter()
        batch = _evaluate(evaluator, archs)
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
    meta = {"strategy": strategy if isinstance(strategy, str) else searcher.strategy_name,
            "num_samples": int(num_samples), "seed": seed, "space": space.spec(), "inline": True,
            "objectives": [str(o) for o in objectives], "constraints": [str(c) for c in constraints]}
    return SearchResult(df, objectives, None, meta)


def _evaluate(evaluator: Evaluator, archs: Sequence[Arch]) -> List[Dict[str, Any]]:
    """Metrics per arch; a failing arch gets an ``error`` instead of failing the batch."""
    try:
        results = evaluator.evaluate(list(archs))
        if len(results) != len(archs):
            raise RuntimeError(f"evaluator returned {len(results)} results for {len(archs)} archs")
        return [_finite(r) for r in results]
    except Exception:  # noqa: BLE001 - isolate the failing arch below
        pass
    out = []
    for arch in archs:
        try:
            out.append(_finite(evaluator.evaluate([arch])[0]))
        except Exception as exc:  # noqa: BLE001
            out.append({"error": f"{type(exc).__name__}: {exc}"[:500]})
    return out


def _finite(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    bad = []
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            bad.append(f"{key}={value!r}")
            continue
        if math.isfinite(number):
            out[str(key)] = number
        else:
            bad.append(f"{key}={number}")
    if bad:
        out["error"] = "non-finite or non-numeric metrics: " + ", ".join(bad)
    return out
