"""Per-device specialisation (Once-for-All): one accuracy predictor, one latency model per
device; for each latency target, evolution on predicted accuracy under ``latency <= target``,
then the best predicted archs are verified with real evaluations.

Nothing is trained or measured per device except the handful of verifications, so a new device
or target costs seconds to minutes. Each device gets its Pareto front (verified accuracy versus
latency) over every arch verified for it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from raynas.arch import arch_from_json
from raynas.constraints import Constraint, CostFn, CostModel, check_constraints_feasible
from raynas.errors import ConfigError
from raynas.objectives import Objective
from raynas.pareto import pareto_mask
from raynas.predictors.base import Predictor
from raynas.predictors.surrogate import SurrogateEvaluator

LATENCY = "latency_ms"


@dataclass
class DeviceSpecialization:
    """What :func:`specialize` found for one device."""

    device: str
    targets: List[Dict[str, Any]]  # per target: winner (verified), candidates, timings
    verified: List[Dict[str, Any]]  # every verified arch: arch, predicted, real metrics, latency
    front: List[Dict[str, Any]]  # verified Pareto front (accuracy max, latency min), by latency
    seconds: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {"device": self.device, "targets": self.targets, "verified": self.verified,
                "front": self.front, "seconds": self.seconds}


def specialize(space, predictor: Predictor, latency: CostFn, targets: Sequence[float], *,
               verify: Any = None, verify_top: int = 3, strategy: str = "evolution",
               strategy_options: Optional[Mapping[str, Any]] = None, search_samples: int = 2000,
               device: str = "device", metric: Optional[str] = None, latency_metric: str = LATENCY,
               seed: int = 0, measured: Any = None, trust_predictor: bool = True) -> DeviceSpecialization:
    """Specialise ``space`` to one device for each latency ``target`` (milliseconds).

    With real evaluations (``verify``), a target's winner is the arch of best *measured*
    ``metric`` among every arch measured so far that meets the target: the verified candidates
    of every target and the ``measured`` table (e.g. the archs measured to fit the predictor).
    A looser target therefore never gets a worse winner than a tighter one (a tighter target's
    archs meet it too). With ``trust_predictor=False`` (its held-out tau was too low) the
    predictor only proposes what is verified; winners still come from measurements alone.

    Args:
        predictor: fitted accuracy predictor (its metric is maximised).
        latency: cost function ``arch -> {latency_metric: ms}`` of the device (a lookup table, a
            table column).
        verify: the real evaluator (``Evaluator``, ``SupernetPool`` or ``arch -> metrics``);
            None skips verification (the winner is then the best predicted arch).
        verify_top: best predicted feasible archs verified per target.
        search_samples: surrogate evaluations of the search per target.
        measured: a results table (``arch``, ``metric`` columns) of archs already measured for
            real, which compete with the verified candidates.
    """
    from raynas.searchers.inline import run_inline
    from raynas.tuner import as_evaluator

    if not targets:
        raise ConfigError("give at least one latency target (ms)")
    if verify_top < 1 or search_samples < 1:
        raise ConfigError("verify_top and search_samples must be >= 1")
    metric = metric or predictor.metric
    objective = Objective(metric, "max")
    real = as_evaluator(verify) if verify is not None else None
    cost_model = CostModel(space, [latency])
    for target in targets:  # every target must be reachable before anything runs
        check_constraints_feasible(space, cost_model, [Constraint(latency_metric, max=float(target))],
                                   np.random.default_rng(seed))
    # the search's cost model adds latency (and the space's cost) to every row
    surrogate = SurrogateEvaluator(predictor, include_cost=False, metric=metric)
    verified: Dict[str, Dict[str, Any]] = {}
    results: List[Dict[str, Any]] = []
    seconds = {"search": 0.0, "verify": 0.0}
    for t_index, target in enumerate(targets):
        constraint = Constraint(latency_metric, max=float(target))
        start = time.perf_counter()
        found = run_inline(space, surrogate, strategy, search_samples, [constraint], [objective],
                           strategy_options=strategy_options, cost_functions=[latency],
                           seed=seed + t_index, check_feasible=False)
        search_s = time.perf_counter() - start
        ok = found.ok.dropna(subset=[metric])
        ranked = ok.sort_values(metric, ascending=False, kind="stable").head(verify_top)
        candidates = [{"arch_id": row["arch_id"], "arch": arch_from_json(row["arch"]),
                       "predicted": float(row[metric]), latency_metric: float(row[latency_metric])}
                      for _, row in ranked.iterrows()]
        start = time.perf_counter()
        todo = [c for c in candidates if c["arch_id"] not in verified]
        if real is not None and todo:
            for cand, metrics in zip(todo, real.evaluate([c["arch"] for c in todo])):
                verified[cand["arch_id"]] = {**cand, "metrics": {k: float(v) for k, v in metrics.items()
                                                                 if isinstance(v, (int, float))},
                                             "error": metrics.get("error")}
        verify_s = time.perf_counter() - start
        seconds["search"] += search_s
        seconds["verify"] += verify_s
        for cand in candidates:
            if cand["arch_id"] in verified:
                cand["real"] = verified[cand["arch_id"]]["metrics"].get(metric, math.nan)
        winner = _winner(candidates, real is not None)
        results.append({"target_ms": float(target), "winner": winner, "candidates": candidates,
                        "num_searched": int(len(found.df)), "search_seconds": search_s,
                        "verify_seconds": verify_s, "seconds": search_s + verify_s})
    rows = list(verified.values())
    if real is not None:
        pool = [dict(r, source="verified") for r in rows] + _measured_rows(measured, predictor, latency, metric,
                                                                           latency_metric, verified)
        for entry in results:  # after every target: archs verified for one target compete for all
            entry["winner"] = _best_measured(pool, entry["target_ms"], metric, latency_metric)
            entry["selection"] = "measured" if not trust_predictor else "verified"
    return DeviceSpecialization(device, results, rows, _front(rows, metric, latency_metric), seconds)


def _winner(candidates: List[Dict[str, Any]], verified: bool) -> Optional[Dict[str, Any]]:
    if not candidates:
        return None
    if verified:
        real = [c for c in candidates if isinstance(c.get("real"), float) and math.isfinite(c["real"])]
        if real:
            return max(real, key=lambda c: c["real"])
    return candidates[0]


def _measured_rows(measured: Any, predictor: Predictor, latency: CostFn, metric: str, latency_metric: str,
                   skip: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The archs of a measured table as winner candidates (real metric, device latency, predicted)."""
    if measured is None or len(measured) == 0 or metric not in measured:
        return []
    ok = measured[measured[metric].notna()]
    if "error" in ok:
        ok = ok[ok["error"].isna() | (ok["error"] == "")]
    ok = ok[~ok["arch_id"].isin(list(skip))]
    if ok.empty:
        return []
    archs = [arch_from_json(a) for a in ok["arch"]]
    predicted = predictor.predict(archs)
    return [{"arch_id": key, "arch": arch, "predicted": float(p), latency_metric: float(latency(arch)[latency_metric]),
             "real": float(value), "metrics": {metric: float(value)}, "source": "measured"}
            for key, arch, p, value in zip(ok["arch_id"], archs, predicted, ok[metric])]


def _best_measured(pool: List[Dict[str, Any]], target: float, metric: str,
                   latency_metric: str) -> Optional[Dict[str, Any]]:
    """The arch of best measured ``metric`` with latency <= ``target`` (ties: the faster one)."""
    feasible = [r for r in pool if r[latency_metric] <= target
                and math.isfinite(r["metrics"].get(metric, math.nan))]
    if not feasible:
        return None
    best = max(feasible, key=lambda r: (r["metrics"][metric], -r[latency_metric], r["arch_id"]))
    return {"arch_id": best["arch_id"], "arch": best["arch"], "predicted": best["predicted"],
            latency_metric: best[latency_metric], "real": best["metrics"][metric], "source": best["source"]}


def _front(rows: List[Dict[str, Any]], metric: str, latency_metric: str) -> List[Dict[str, Any]]:
    usable = [r for r in rows if math.isfinite(r["metrics"].get(metric, math.nan))]
    if not usable:
        return []
    points = np.array([[r["metrics"][metric], -r[latency_metric]] for r in usable])
    front = [r for r, keep in zip(usable, pareto_mask(points)) if keep]
    return sorted(({"arch_id": r["arch_id"], "arch": r["arch"], metric: r["metrics"][metric],
                    latency_metric: r[latency_metric], "predicted": r["predicted"]} for r in front),
                  key=lambda r: r[latency_metric])


def fit_from_evaluations(space, evaluator: Any, num_samples: int, *, kind: str = "mlp",
                         metric: str = "accuracy", predictor_options: Optional[Mapping[str, Any]] = None,
                         seed: int = 0, holdout: int = 0):
    """Measure ``num_samples + holdout`` random archs with ``evaluator`` and fit a predictor on
    ``num_samples`` of them; returns ``(predictor, held-out scores or None, evaluations table)``.

    This is OFA's recipe: a few hundred to thousands of weight-inherited evaluations train the
    predictor once; every later device and target reuses it.
    """
    from raynas.predictors import load_training_data, make_predictor
    from raynas.searchers.inline import run_inline
    from raynas.tuner import as_evaluator

    if num_samples < 2 or holdout < 0:
        raise ConfigError("fitting needs num_samples >= 2 and holdout >= 0")
    start = time.perf_counter()
    table = run_inline(space, as_evaluator(evaluator), "random", num_samples + holdout, objectives=metric,
                       batch_size=max(8, min(256, num_samples + holdout)), seed=seed)
    eval_s = time.perf_counter() - start
    data = load_training_data(space, table.df, metric=metric)
    scores = None
    start = time.perf_counter()
    if holdout > 0:
        train, test = data.split(len(data) - min(holdout, len(data) - 2), np.random.default_rng(seed))
        predictor = make_predictor(kind, space, metric=metric, seed=seed, **dict(predictor_options or {})).fit(train)
        scores = predictor.score(test)
    else:
        predictor = make_predictor(kind, space, metric=metric, seed=seed, **dict(predictor_options or {})).fit(data)
    predictor.fit_info.update({"evaluation_seconds": eval_s, "fit_and_score_seconds": time.perf_counter() - start})
    return predictor, scores, table.df
