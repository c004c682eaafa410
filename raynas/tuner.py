"""``raynas.search``: build a Ray Tune ``Tuner`` that runs a strategy over a space, and return
the results table. (The module is named for what it builds, so ``raynas.search`` is the function.)"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from raynas.arch import Arch
from raynas.constraints import CostFn, CostModel, check_constraints_feasible, parse_constraints
from raynas.errors import ConfigError, RaynasError
from raynas.evaluators.base import Evaluator, FunctionEvaluator
from raynas.objectives import parse_objectives
from raynas.registry import create_space
from raynas.results import ResultsCollector, SearchResult, write_search_meta
from raynas.schedulers import check_scheduler, resolve_scheduler
from raynas.runtime import ensure_ray
from raynas.searchers import ArchSearcher, make_searcher
from raynas.space import SearchSpace

DEFAULT_STORAGE = "raynas_results"


def as_evaluator(evaluator: Any) -> Evaluator:
    """Accept an Evaluator, anything with ``.evaluator()`` (a pool), or ``fn(arch) -> dict``."""
    if isinstance(evaluator, Evaluator):
        return evaluator
    if hasattr(evaluator, "evaluator") and callable(evaluator.evaluator):
        return evaluator.evaluator()
    if callable(evaluator):
        return FunctionEvaluator(evaluator)
    raise ConfigError(f"cannot evaluate with {type(evaluator).__name__}: pass a raynas Evaluator, "
                      "a SupernetPool or a function arch -> dict of metrics")


def search(space: Union[str, SearchSpace], evaluator: Any, strategy: Union[str, ArchSearcher] = "evolution",
           num_samples: int = 100, constraints: Any = None, objectives: Any = None, *,
           strategy_options: Optional[Mapping[str, Any]] = None, batch_size: Optional[int] = None,
           max_concurrent: Optional[int] = None, seed: int = 0, name: Optional[str] = None,
           storage_path: Union[str, Path] = DEFAULT_STORAGE, scheduler: Any = None,
           cost_functions: Sequence[CostFn] = (), trial_resources: Optional[Mapping[str, float]] = None,
           progress: bool = True, tune_loggers: bool = False, address: Optional[str] = None) -> SearchResult:
    """Search ``space`` for the best archs under ``constraints``, evaluating with ``evaluator``.

    Args:
        space: a registered space name or a ``SearchSpace``.
        evaluator: an ``Evaluator``, a ``SupernetPool`` or a function ``arch -> metrics``.
        strategy: ``"evolution"``, ``"random"``, ``"optuna"``/``"optuna:nsga2"``..., or a searcher.
        num_samples: how many distinct archs to evaluate.
        constraints: e.g. ``["flops<=200M", "params<=5e6"]`` on metrics known before evaluation.
        objectives: e.g. ``"accuracy"`` or ``["accuracy:max", "latency_ms:min"]``; the first is
            primary for single-objective strategies.
        batch_size: archs per Tune trial (default: the evaluator's preference); Tune costs tens of
            milliseconds per trial, so cheap evaluations should come in batches.
        max_concurrent: trials in flight (default: the evaluator's preference).
        scheduler: ``"asha"``, ``"hyperband"`` or a Tune scheduler, for multi-fidelity evaluators
            (one arch per trial, one report per fidelity; see :mod:`raynas.schedulers`).
        cost_functions: extra pre-evaluation metrics (e.g. a latency lookup table).
        tune_loggers: keep Tune's CSV/JSON/TensorBoard loggers (for dashboards).

    Returns the :class:`SearchResult`; its table is also at ``<storage_path>/<name>/results.parquet``.
    """
    from ray import tune

    space = create_space(space) if isinstance(space, str) else space
    if not isinstance(space, SearchSpace):
        raise ConfigError(f"space must be a registered name or a SearchSpace, got {type(space).__name__}")
    evaluator = as_evaluator(evaluator)
    objectives = parse_objectives(objectives)
    constraints = parse_constraints(constraints)
    cost_model = CostModel(space, cost_functions)
    if int(num_samples) <= 0:
        raise ConfigError(f"num_samples must be a positive number of archs, got {num_samples}")
    check_constraints_feasible(space, cost_model, constraints, np.random.default_rng(seed))

    scheduler = resolve_scheduler(scheduler, evaluator.num_fidelities)
    multi_fidelity = scheduler is not None and evaluator.num_fidelities > 1
    if multi_fidelity:
        batch_size = 1
    batch_size = int(batch_size or evaluator.preferred_batch_size)
    ensure_ray(address)
    resources = dict(trial_resources or evaluator.trial_resources)
    max_concurrent = int(max_concurrent or evaluator.preferred_concurrency)
    check_scheduler(scheduler, max_concurrent, int(num_samples))

    searcher = make_searcher(strategy, strategy_options)
    searcher.setup(space, objectives, constraints=constraints, cost_model=cost_model, budget=int(num_samples),
                   batch_size=batch_size, max_concurrent=max_concurrent, seed=seed)
    name = name or f"{space.name}-{searcher.strategy_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = Path(storage_path).expanduser().resolve()
    directory = storage / name
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "space": space.spec(), "strategy": strategy if isinstance(strategy, str)
            else searcher.strategy_name, "num_samples": int(num_samples), "seed": seed,
            "objectives": [str(o) for o in objectives], "constraints": [str(c) for c in constraints],
            "batch_size": batch_size, "max_concurrent": max_concurrent, "started_at": time.time()}
    write_search_meta(directory, meta)

    collector = ResultsCollector(directory, cost_model)
    callbacks = [collector]
    if progress:
        from raynas.progress import SearchProgress
        callbacks.append(SearchProgress(int(num_samples), objectives[0]))

    primary = objectives[0]
    trainable = tune.with_parameters(_trainable(), evaluator=evaluator, metric=primary.metric,
                                     mode=primary.mode, multi_fidelity=multi_fidelity)
    trainable = tune.with_resources(trainable, resources)
    tune_config = tune.TuneConfig(
        search_alg=searcher, scheduler=scheduler, num_samples=math.ceil(int(num_samples) / batch_size),
        max_concurrent_trials=max_concurrent, reuse_actors=True,
        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        metric=primary.metric if scheduler is not None else None,
        mode=primary.mode if scheduler is not None else None)
    run_config = tune.RunConfig(name=name, storage_path=str(storage), callbacks=callbacks, verbose=0,
                                log_to_file=False)
    # Tune reads these when the run starts: its loggers cost file writes per trial (wanted only
    # for dashboards), and its console tables would drown our progress bar.
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0" if tune_loggers else "1", "RAY_AIR_NEW_OUTPUT": "0"}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        tune.Tuner(trainable, tune_config=tune_config, run_config=run_config).fit()
    except Exception as exc:  # Tune wraps errors raised inside the searcher; surface ours as-is
        root = _raynas_cause(exc)
        if root is not None:
            raise root from None
        raise
    finally:
        for key, value in previous.items():
            _restore_env(key, value)
        collector.flush()
    meta["finished_at"] = time.time()
    write_search_meta(directory, meta)
    return SearchResult(collector.dataframe(), objectives, directory, meta)


def _trainable() -> Callable:
    from trainables.evaluate import evaluate_archs
    return evaluate_archs


def _trial_name(trial) -> str:
    ids = trial.config.get("arch_ids") or []
    if not ids:
        return f"trial_{trial.trial_id}"
    return f"arch_{ids[0]}" if len(ids) == 1 else f"batch_{ids[0]}_{len(ids)}"


def _raynas_cause(exc: BaseException) -> Optional[RaynasError]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RaynasError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _restore_env(key: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
