"""Predict then verify: search on a surrogate, re-evaluate its top-k archs with the real
evaluator, refit the predictor on everything measured so far, repeat until the budget of real
evaluations is spent.

Real evaluations are the expensive part (weight-inherited accuracy on a pool, or a benchmark
table standing in for training), so the budget counts only those; the inner search on the
predictor is free by comparison. The inner search is any strategy, run in-process
(:func:`raynas.searchers.inline.run_inline`) or through :func:`raynas.search` on Tune.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from raynas.arch import Arch, arch_from_json, arch_id, canonical_json
from raynas.constraints import CostFn, CostModel, parse_constraints, satisfies
from raynas.errors import ConfigError, DataError
from raynas.objectives import Objective
from raynas.predictors.base import Predictor, make_predictor
from raynas.predictors.data import PredictorData, from_pairs
from raynas.predictors.metrics import ranking_metrics
from raynas.predictors.surrogate import SurrogateEvaluator
from raynas.rng import derive_rng

Log = Optional[Callable[[str], None]]


@dataclass
class GuidedResult:
    """Every real evaluation (``evaluated``: one row per arch, in order, with the round that
    proposed it and the prediction it had), per-round statistics, and the last predictor."""

    evaluated: Any  # pandas DataFrame
    rounds: List[Dict[str, Any]]
    predictor: Optional[Predictor]
    objective: Objective
    num_queries: int = 0
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def ok(self):
        df = self.evaluated
        return df[df["error"].isna()] if "error" in df else df

    def best(self):
        """The best row by real value of the objective."""
        ok = self.ok.dropna(subset=[self.objective.metric])
        if ok.empty:
            raise ConfigError(f"no real evaluation reported '{self.objective.metric}'")
        return ok.sort_values(self.objective.metric, ascending=self.objective.mode == "min", kind="stable").iloc[0]

    def best_arch(self) -> Arch:
        return arch_from_json(self.best()["arch"])

    def best_so_far(self) -> np.ndarray:
        """Best real value after each real query (for anytime plots and equal-budget comparisons)."""
        values = self.evaluated[self.objective.metric].to_numpy(dtype=np.float64, na_value=np.nan)
        signed = np.where(np.isfinite(values), self.objective.sign * values, -np.inf)
        return self.objective.sign * np.maximum.accumulate(signed)


def predict_then_verify(space, evaluator: Any, num_queries: int, *, metric: str = "accuracy", mode: str = "max",
                        predictor: str = "mlp", predictor_options: Optional[Mapping[str, Any]] = None,
                        initial: Optional[PredictorData] = None, num_initial: Optional[int] = None,
                        top_k: int = 10, strategy: str = "evolution",
                        strategy_options: Optional[Mapping[str, Any]] = None, search_samples: int = 1000,
                        constraints: Any = None, cost_functions: Sequence[CostFn] = (), seed: int = 0,
                        use_tune: bool = False, tune_options: Optional[Mapping[str, Any]] = None,
                        log: Log = None) -> GuidedResult:
    """Spend ``num_queries`` real evaluations, most of them on archs a predictor ranks best.

    Args:
        evaluator: the real evaluator (an ``Evaluator``, a ``SupernetPool`` or ``arch -> metrics``).
        predictor / predictor_options: kind (``"mlp"``, ``"gbt"``) refitted every round.
        initial: (arch, value) pairs already measured (e.g. :func:`load_training_data` of an
            earlier search); they train the first predictor and cost no query.
        num_initial: random archs evaluated first (default ``max(top_k, num_queries // 5)``;
            0 needs ``initial``).
        top_k: archs verified per round (the best predicted ones not yet measured).
        strategy / strategy_options / search_samples: the inner search on the surrogate.
        use_tune: run the inner search through :func:`raynas.search` (``tune_options`` are passed
            on) instead of in-process.
    """
    from raynas.searchers.inline import run_inline
    from raynas.tuner import as_evaluator

    if num_queries < 1 or top_k < 1 or search_samples < 1:
        raise ConfigError("num_queries, top_k and search_samples must be >= 1")
    objective = Objective(metric, mode)
    real = as_evaluator(evaluator)
    constraint_list = parse_constraints(constraints)
    cost_model = CostModel(space, cost_functions)
    if num_initial is None:
        num_initial = 0 if initial is not None and len(initial) >= 2 else max(top_k, num_queries // 5)
    num_initial = min(int(num_initial), int(num_queries))
    if num_initial < 2 and (initial is None or len(initial) + num_initial < 2):
        raise ConfigError("the first predictor needs at least 2 measured archs: pass initial data or num_initial >= 2")

    rows: List[Dict[str, Any]] = []
    seconds = {"fit": 0.0, "search": 0.0, "verify": 0.0}
    known_archs: List[Arch] = list(initial.archs) if initial is not None else []
    known_values: List[float] = list(map(float, initial.y)) if initial is not None else []
    seen = {arch_id(a) for a in known_archs}

    def verify(archs: Sequence[Arch], round_index: int, predicted: Optional[np.ndarray]) -> None:
        start = time.perf_counter()
        results = real.evaluate(list(archs))
        seconds["verify"] += time.perf_counter() - start
        for i, (arch, metrics) in enumerate(zip(archs, results)):
            seen.add(arch_id(arch))
            row = {**cost_model(arch), **{k: v for k, v in metrics.items()}, "arch_id": arch_id(arch),
                   "arch": canonical_json(arch), "order": len(rows), "round": round_index,
                   "predicted": float(predicted[i]) if predicted is not None else math.nan}
            row.setdefault("error", None)
            rows.append(row)
            value = metrics.get(metric)
            if not metrics.get("error") and value is not None and math.isfinite(float(value)):
                known_archs.append(arch)
                known_values.append(float(value))

    if num_initial > 0:
        start = time.perf_counter()
        first = run_inline(space, _NoEvaluation(), "random", num_initial, constraint_list,
                           cost_functions=cost_functions, seed=int(derive_rng(seed, "initial").integers(2**31)),
                           check_feasible=True)
        seconds["search"] += time.perf_counter() - start
        verify(first.archs(), 0, None)
    rounds: List[Dict[str, Any]] = []
    fitted: Optional[Predictor] = None
    r = 0
    while len(rows) < num_queries:
        r += 1
        data = from_pairs(space, known_archs, known_values, metric)
        if len(data) < 2:
            raise DataError(f"only {len(data)} real evaluation(s) reported '{metric}'; cannot fit a predictor")
        start = time.perf_counter()
        fitted = make_predictor(predictor, space, metric=metric,
                                seed=int(derive_rng(seed, "predictor", r).integers(2**31)),
                                **dict(predictor_options or {})).fit(data)
        seconds["fit"] += time.perf_counter() - start
        surrogate = SurrogateEvaluator(fitted, cost_functions, include_cost=False)
        inner_seed = int(derive_rng(seed, "inner", r).integers(2**31))
        start = time.perf_counter()
        if use_tune:
            from raynas.tuner import search
            options = {"progress": False, **dict(tune_options or {})}
            found = search(space, surrogate, strategy, search_samples, constraint_list, [objective],
                           strategy_options=strategy_options, cost_functions=cost_functions, seed=inner_seed,
                           **options)
        else:
            found = run_inline(space, surrogate, strategy, search_samples, constraint_list, [objective],
                               strategy_options=strategy_options, cost_functions=cost_functions,
                               seed=inner_seed, check_feasible=(r == 1 and num_initial == 0))
        want = min(top_k, num_queries - len(rows))
        picks, predicted = _top_unseen(found, objective, seen, want)
        if len(picks) < want:  # the inner search found too few new archs: best predicted of a random pool
            extra, extra_pred = _random_unseen(space, fitted, objective, seen | {arch_id(a) for a in picks},
                                               want - len(picks), constraint_list, cost_model,
                                               derive_rng(seed, "fill", r))
            picks, predicted = picks + extra, np.concatenate([predicted, extra_pred])
        seconds["search"] += time.perf_counter() - start
        if not picks:
            if log:
                log(f"round {r}: no unmeasured feasible arch left; stopping after {len(rows)} queries")
            break
        before = len(rows)
        verify(picks, r, predicted)
        new = rows[before:]
        real_values = np.array([row.get(metric, math.nan) for row in new], dtype=np.float64)
        ok = np.isfinite(real_values)
        stats = {"round": r, "num_train": len(data), "num_verified": len(new),
                 "best_predicted": float(objective.sign * np.max(objective.sign * predicted)),
                 "best_verified": float(objective.sign * np.max(objective.sign * real_values[ok])) if ok.any() else math.nan}
        if ok.sum() >= 2 and np.ptp(real_values[ok]) > 0:
            stats.update({f"verified_{k}": v for k, v in ranking_metrics(real_values[ok], predicted[ok]).items()
                          if k in ("kendall_tau", "rmse")})
        rounds.append(stats)
        if log:
            log(f"round {r}: fitted on {len(data)}, verified {len(new)}, best verified "
                f"{stats['best_verified']:.3f} (predicted best {stats['best_predicted']:.3f})")
    import pandas as pd

    df = pd.DataFrame(rows)
    if "error" not in df:
        df["error"] = None
    return GuidedResult(df, rounds, fitted, objective, num_queries=len(rows), seconds=seconds)


def _top_unseen(found, objective: Objective, seen: set, want: int):
    ok = found.ok.dropna(subset=[objective.metric]) if objective.metric in found.ok else found.ok.iloc[:0]
    ranked = ok.sort_values(objective.metric, ascending=objective.mode == "min", kind="stable")
    picks: List[Arch] = []
    values: List[float] = []
    for key, text, value in zip(ranked["arch_id"], ranked["arch"], ranked[objective.metric] if len(ranked) else []):
        if len(picks) >= want:
            break
        if key in seen:
            continue
        picks.append(arch_from_json(text))
        values.append(float(value))
    return picks, np.asarray(values, dtype=np.float64)


def _random_unseen(space, predictor: Predictor, objective: Objective, seen: set, want: int,
                   constraints, cost_model: CostModel, rng: np.random.Generator, pool_factor: int = 20):
    pool: Dict[str, Arch] = {}
    for _ in range(pool_factor * want * 5):
        if len(pool) >= pool_factor * want:
            break
        arch = space.sample(rng)
        key = arch_id(arch)
        if key in seen or key in pool or (constraints and not satisfies(constraints, cost_model(arch))):
            continue
        pool[key] = arch
    if not pool:
        return [], np.zeros(0)
    archs = list(pool.values())
    predicted = predictor.predict(archs)
    order = np.argsort(-objective.sign * predicted, kind="stable")[:want]
    return [archs[i] for i in order], predicted[order]


class _NoEvaluation:
    """Stands in for an evaluator when a strategy only proposes (the archs are measured after)."""

    preferred_batch_size = 64

    def evaluate(self, archs: Sequence[Arch]) -> List[Dict[str, float]]:
        return [{} for _ in archs]
