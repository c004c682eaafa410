"""``raynas.search``: build a Ray Tune ``Tuner`` that runs a strategy over a space, and return
the results table. (The module is named for what it builds, so ``raynas.search`` is the function.)"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from raynas.arch import Arch
from raynas.constraints import CostFn, CostModel, check_constraints_feasible, parse_constraints
from raynas.errors import CheckpointError, ConfigError, RaynasError
from raynas.evaluators.base import Evaluator, FunctionEvaluator
from raynas.experiments import check_name, default_name, is_experiment, prepare_new
from raynas.objectives import parse_objectives
from raynas.registry import create_space
from raynas.ledger import read_journal, reported_rows
from raynas.results import ResultsCollector, SearchResult, read_search_meta, write_search_meta
from raynas.schedulers import check_scheduler, resolve_scheduler
from raynas.runtime import ensure_ray
from raynas.searchers import ArchSearcher, make_searcher
from raynas.space import SearchSpace

DEFAULT_STORAGE = "raynas_results"
#: Tune's state file in an experiment directory (its presence means a search can be resumed)
TUNER_STATE_FILE = "tuner.pkl"
#: re-runs of a trial whose process died before its archs are recorded as failed
DEFAULT_TRIAL_RETRIES = 3


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
           progress: bool = True, tune_loggers: bool = False, address: Optional[str] = None,
           resume: bool = False, overwrite: bool = False, callbacks: Sequence[Any] = (),
           max_trial_failures: int = DEFAULT_TRIAL_RETRIES,
           extra_meta: Optional[Mapping[str, Any]] = None) -> SearchResult:
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
        name: the experiment's folder under ``storage_path``: a plain name (default:
            ``<space>-<strategy>-<date>-<time>``).
        resume: continue the experiment ``<storage_path>/<name>`` if it exists (see
            :func:`resume_search`; its saved configuration wins over these arguments), else start it.
        overwrite: replace an existing experiment ``<storage_path>/<name>`` (its folder is removed
            first). Without ``resume`` or ``overwrite`` an existing experiment is an error.
        callbacks: extra Tune callbacks (e.g. a logger of your own).
        max_trial_failures: times Tune re-runs a trial whose process died (e.g. its node was
            lost) before its archs are recorded as failed; the pool's cache answers what the
            failed attempt already evaluated.
        extra_meta: JSON-able facts stored in ``search.json`` (the CLI stores how to rebuild
            its evaluator, for ``raynas search --resume``).

    Returns the :class:`SearchResult`; its table is also at ``<storage_path>/<name>/results.parquet``.
    """
    from ray import tune

    if resume and overwrite:
        raise ConfigError("resume=True continues an experiment and overwrite=True replaces it: pass one")
    storage = Path(storage_path).expanduser().resolve()
    if name is not None:
        check_name(name)
    if resume:
        if not name:
            raise ConfigError("resume=True needs the name of the experiment to continue")
        if is_experiment(storage / name):
            return resume_search(storage / name, evaluator, progress=progress, address=address, callbacks=callbacks)
    space = create_space(space) if isinstance(space, str) else space
    if not isinstance(space, SearchSpace):
        raise ConfigError(f"space must be a registered name or a SearchSpace, got {type(space).__name__}")
    evaluator = as_evaluator(evaluator)
    objectives = parse_objectives(objectives)
    constraints = parse_constraints(constraints)
    cost_model = CostModel(space, cost_functions)
    num_samples = _positive_int("num_samples", num_samples)
    batch_size = _positive_int("batch_size", batch_size, optional=True)
    max_concurrent = _positive_int("max_concurrent", max_concurrent, optional=True)
    check_constraints_feasible(space, cost_model, constraints, np.random.default_rng(seed))

    scheduler = resolve_scheduler(scheduler, evaluator.num_fidelities)
    multi_fidelity = scheduler is not None and evaluator.num_fidelities > 1
    if multi_fidelity:
        batch_size = 1
    batch_size = int(batch_size or evaluator.preferred_batch_size)
    resources = dict(trial_resources or evaluator.trial_resources)
    max_concurrent = int(max_concurrent or evaluator.preferred_concurrency)
    check_scheduler(scheduler, max_concurrent, int(num_samples))

    searcher = make_searcher(strategy, strategy_options)
    searcher.setup(space, objectives, constraints=constraints, cost_model=cost_model, budget=int(num_samples),
                   batch_size=batch_size, max_concurrent=max_concurrent, seed=seed)
    name = name or default_name(storage, f"{space.name}-{searcher.strategy_name}")
    directory = storage / name
    prepare_new(directory, overwrite)
    ensure_ray(address)  # only once the configuration is known to be good
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "space": space.spec(), "strategy": strategy if isinstance(strategy, str)
            else searcher.strategy_name, "num_samples": int(num_samples), "seed": seed,
            "objectives": [str(o) for o in objectives], "constraints": [str(c) for c in constraints],
            "batch_size": batch_size, "max_concurrent": max_concurrent, "multi_fidelity": multi_fidelity,
            "tune_loggers": bool(tune_loggers), "trial_resources": resources, **dict(extra_meta or {}),
            "status": "running", "started_at": time.time()}
    write_search_meta(directory, meta)
    searcher.attach_experiment(str(directory))

    collector = ResultsCollector(directory, cost_model)
    all_callbacks = [collector, *callbacks]
    if progress:
        from raynas.progress import SearchProgress
        all_callbacks.append(SearchProgress(int(num_samples), objectives[0]))

    trainable = _make_trainable(evaluator, objectives[0], multi_fidelity, resources)
    primary = objectives[0]
    tune_config = tune.TuneConfig(
        # a cap, not a target: the searcher ends the search when its budget of archs is spent
        # (a batch can close early, and a resumed search adopts archs Tune never saw)
        search_alg=searcher, scheduler=scheduler, num_samples=int(num_samples),
        max_concurrent_trials=max_concurrent, reuse_actors=True,
        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        metric=primary.metric if scheduler is not None else None,
        mode=primary.mode if scheduler is not None else None)
    run_config = tune.RunConfig(name=name, storage_path=str(storage), callbacks=all_callbacks, verbose=0,
                                log_to_file=False,
                                failure_config=tune.FailureConfig(max_failures=int(max_trial_failures)))
    tuner = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
    return _fit(tuner, collector, objectives, directory, meta)


def resume_search(path: Union[str, Path], evaluator: Any, *, progress: bool = True,
                  address: Optional[str] = None, callbacks: Sequence[Any] = ()) -> SearchResult:
    """Continue the search in experiment directory ``path`` whose driver was killed.

    Tune restores its trials and the searcher's state (population, Pareto archive, Optuna
    study, ...) from its last experiment checkpoint; the results journal replays what happened
    after it (see :mod:`raynas.resume`): no arch is evaluated twice, none is lost, and the
    result is the union of both runs. ``evaluator`` is built anew (the old pool died with the
    driver): the same kind the search started with. Callbacks of the first run are not restored:
    pass them again as ``callbacks``.

    Tune's experiment checkpoint (tuner.pkl, experiment state) is pickled by Tune itself:
    resume only experiment directories you trust.
    """
    from ray import tune

    directory = Path(path).expanduser().resolve()
    meta = read_search_meta(directory)
    check_resumable(directory)
    evaluator = as_evaluator(evaluator)
    objectives = parse_objectives(meta.get("objectives"))
    ensure_ray(address)
    known = reported_rows(read_journal(directory))
    resources = meta.get("trial_resources") or evaluator.trial_resources
    trainable = _make_trainable(evaluator, objectives[0], bool(meta.get("multi_fidelity")), resources, known)
    try:
        tuner = tune.Tuner.restore(str(directory), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    except Exception as exc:  # noqa: BLE001 - Tune raises many types for a damaged tuner.pkl
        raise CheckpointError(f"Tune cannot restore {directory / TUNER_STATE_FILE} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''})") from exc
    searcher, run_config = _restored_parts(tuner)
    searcher.attach_experiment(str(directory))
    collector = ResultsCollector(directory, searcher.cost_model, resume=True)
    # the original run's callbacks are not carried over (they may hold state of the dead
    # driver); pass your own again through ``callbacks``
    new_callbacks = [collector, *callbacks]
    if progress:
        from raynas.progress import SearchProgress
        new_callbacks.append(SearchProgress(int(meta.get("num_samples") or searcher.budget), objectives[0],
                                            done=collector.rows))
    run_config.callbacks = new_callbacks
    meta.pop("finished_at", None)
    meta["status"] = "running"
    meta.setdefault("resumed_at", []).append(time.time())
    write_search_meta(directory, meta)
    return _fit(tuner, collector, objectives, directory, meta)


def _fit(tuner, collector: ResultsCollector, objectives, directory: Path, meta: Dict[str, Any]) -> SearchResult:
    # Tune reads these when the run starts: its loggers cost file writes per trial (wanted only
    # for dashboards), and its console tables would drown our progress bar. Its experiment
    # checkpoint period stays adaptive ("auto": >= 10 s, ~5% of the driver's time): the journal
    # makes a resume lose nothing whatever the period, which only decides how many interrupted
    # trials are re-run (answered from the journal, not evaluated again).
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0" if meta.get("tune_loggers") else "1",
           "RAY_AIR_NEW_OUTPUT": "0"}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        tuner.fit()
    except Exception as exc:  # Tune wraps errors raised inside the searcher; surface ours as-is
        root = _raynas_cause(exc)
        if root is not None:
            raise root from None
        raise
    finally:
        for key, value in previous.items():
            _restore_env(key, value)
        collector.flush()
        collector.journal.close()
    meta["finished_at"] = time.time()
    meta["status"] = "finished"
    write_search_meta(directory, meta)
    return SearchResult(collector.dataframe(), objectives, directory, meta)


def _make_trainable(evaluator: Evaluator, primary, multi_fidelity: bool, resources: Mapping[str, float],
                    known: Optional[Mapping[str, Mapping[str, Any]]] = None):
    from ray import tune

    trainable = tune.with_parameters(_trainable(), evaluator=evaluator, metric=primary.metric,
                                     mode=primary.mode, multi_fidelity=multi_fidelity, known=dict(known or {}))
    return tune.with_resources(trainable, dict(resources))


def check_resumable(directory: Union[str, Path]) -> None:
    """Raise one clear error if ``directory`` holds no search that Tune can resume (checked
    before anything expensive starts, and instead of failing deep inside Tune)."""
    directory = Path(directory)
    read_search_meta(directory)
    if not (directory / TUNER_STATE_FILE).exists():
        raise ConfigError(f"{directory} holds no Tune state ({TUNER_STATE_FILE}): nothing to resume")
    states = sorted(directory.glob("experiment_state-*.json"))
    if not states:
        raise ConfigError(f"{directory} has no Tune experiment checkpoint yet (the driver died before the "
                          "first one, within seconds of starting): start the search again")
    try:
        json.loads(states[-1].read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"Tune's experiment checkpoint {states[-1]} is damaged ({exc})") from exc
    for state in sorted(directory.glob("searcher-state-*.pkl"))[-1:]:
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"the searcher state {state} is damaged ({exc}); "
                                  "the search cannot be resumed with its strategy's state") from exc


def _restored_parts(tuner):
    """The searcher and run config inside a restored ``Tuner`` (Tune has no public accessor)."""
    internal = getattr(tuner, "_local_tuner", None)
    search_alg = getattr(getattr(internal, "_tune_config", None), "search_alg", None)
    if internal is None or not isinstance(search_alg, ArchSearcher):
        raise ConfigError("this experiment was not started by raynas.search (no raynas searcher in its "
                          "Tune state), or this Ray version stores it differently")
    return search_alg, internal.get_run_config()


def _positive_int(name: str, value: Any, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ConfigError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")
    return int(value)


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
