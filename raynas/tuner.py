"""``raynas.search``: build a Ray Tune ``Tuner`` that runs a strategy over a space, and return
the results table. (The module is named for what it builds, so ``raynas.search`` is the function.)"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from raynas.batching import resolve_batch_size
from raynas.constraints import CostFn
from raynas.errors import ConfigError, RaynasError, SearchInterrupted
from raynas.evaluators.base import Evaluator, FunctionEvaluator, as_evaluator
from raynas.evaluators.spec import EvaluatorSpec, spec_of
from raynas.experiments import check_name, default_name, is_experiment, prepare_new
from raynas.ledger import JOURNAL_FILE, Journal, read_journal, reported_rows
from raynas.registry import TRAINABLES
from raynas.resume import check_replayable, replay_journal
from raynas.results import RESULTS_FILE, SearchResult, read_search_meta, write_search_meta
from raynas.runtime import DEFAULT_STORAGE, check_trial_gpus, ensure_ray, tune_environment
from raynas.schedulers import check_scheduler, resolve_scheduler
from raynas.search_config import SearchConfig
from raynas.searchers import ArchSearcher
from raynas.space import SearchSpace

#: re-runs of a trial whose process died before its archs are recorded as failed
DEFAULT_TRIAL_RETRIES = 3
__all__ = ["search", "resume_search", "check_search_inputs", "check_resumable", "as_evaluator", "DEFAULT_STORAGE"]


def search(space: Union[str, SearchSpace, SearchConfig], evaluator: Any,
           strategy: Union[str, ArchSearcher] = "evolution", num_samples: int = 100, constraints: Any = None,
           objectives: Any = None, *, strategy_options: Optional[Mapping[str, Any]] = None,
           batch_size: Optional[int] = None, max_concurrent: Optional[int] = None, seed: int = 0,
           name: Optional[str] = None, storage_path: Union[str, Path] = DEFAULT_STORAGE, scheduler: Any = None,
           cost_functions: Sequence[CostFn] = (), trial_resources: Optional[Mapping[str, float]] = None,
           progress: bool = True, tune_loggers: bool = False, tensorboard: bool = True,
           address: Optional[str] = None,
           resume: bool = False, overwrite: bool = False, callbacks: Sequence[Any] = (),
           max_trial_failures: int = DEFAULT_TRIAL_RETRIES,
           extra_meta: Optional[Mapping[str, Any]] = None) -> SearchResult:
    """Search ``space`` for the best archs under ``constraints``, evaluating with ``evaluator``.

    Args:
        space: a registered space name or a ``SearchSpace`` -- or a whole
            :class:`~raynas.search_config.SearchConfig` (then strategy, num_samples,
            constraints, objectives, strategy_options, batch_size, max_concurrent, seed and
            cost_functions come from it and must not be passed again).
        evaluator: an ``Evaluator``, a ``SupernetPool`` or a function ``arch -> metrics``.
        strategy: ``"evolution"``, ``"random"``, ``"optuna"``/``"optuna:nsga2"``..., or a searcher.
        num_samples: how many distinct archs to evaluate.
        constraints: e.g. ``["flops<=200M", "params<=5e6"]`` on metrics known before evaluation.
        objectives: e.g. ``"accuracy"`` or ``["accuracy:max", "latency_ms:min"]``; the first is
            primary for single-objective strategies.
        batch_size: archs per Tune trial. Default: the evaluator's ``preferred_batch_size`` if it
            states one, else sized from its cost per arch (declared, or timed on a few archs
            before Tune starts) so a trial lasts ~1 s, a power of two up to 512 and at most the
            budget's share per concurrent trial (see :mod:`raynas.batching`). Tune costs tens of
            milliseconds per trial, so cheap evaluations come in large batches. The choice is
            recorded in ``search.json`` and a resume keeps it; pass a number to fix it.
        max_concurrent: trials in flight (default: the evaluator's preference).
        scheduler: ``"asha"``, ``"hyperband"`` or a Tune scheduler, for multi-fidelity evaluators
            (one arch per trial, one report per fidelity; see :mod:`raynas.schedulers`).
        cost_functions: extra pre-evaluation metrics (e.g. a latency lookup table).
        tune_loggers: also Tune's own per-trial TensorBoard and CSV loggers (one row per trial).
        tensorboard: one Tune result row per arch in each trial's ``result.json`` (what
            ``tune.ExperimentAnalysis`` reads) and a per-arch TensorBoard log in
            ``<experiment>/tensorboard`` (see :mod:`raynas.tune_view`); on by default. Nothing
            next to an evaluation that takes milliseconds; off, a random search of a table moves
            ~1.3x the archs/s (BENCHMARKS.md, "Search throughput").
        name: the experiment's folder under ``storage_path``: a plain name (default:
            ``<space>-<strategy>-<date>-<time>``).
        resume: continue the experiment ``<storage_path>/<name>`` if it exists (see
            :func:`resume_search`; its saved configuration wins over these arguments; a strategy
            object, scheduler object and cost functions are passed on), else start it.
        overwrite: replace an existing experiment ``<storage_path>/<name>`` (its folder is removed
            first). Without ``resume`` or ``overwrite`` an existing experiment is an error.
        callbacks: extra Tune callbacks (e.g. a logger of your own).
        max_trial_failures: times Tune re-runs a trial whose process died (e.g. its node was
            lost) before its archs are recorded as failed; the pool's cache answers what the
            failed attempt already evaluated.
        extra_meta: JSON-able facts stored in ``search.json``. An evaluator that can be rebuilt
            from files (a table, a pool from a checkpoint) records its spec there by itself, so
            :func:`resume_search` needs no evaluator.

    Returns the :class:`SearchResult`; its table is also at ``<storage_path>/<name>/results.parquet``.
    """
    if resume and overwrite:
        raise ConfigError("resume=True continues an experiment and overwrite=True replaces it: pass one")
    storage = Path(storage_path).expanduser().resolve()
    if name is not None:
        check_name(name)
    if isinstance(space, SearchConfig):
        _check_no_search_arguments(strategy, num_samples, constraints, objectives, strategy_options, batch_size,
                                   max_concurrent, seed, cost_functions)
        strategy, cost_functions = space.strategy, space.cost_functions
    if resume:
        if not name:
            raise ConfigError("resume=True needs the name of the experiment to continue")
        if is_experiment(storage / name):
            return resume_search(storage / name, evaluator, strategy=strategy if isinstance(strategy, ArchSearcher)
                                 else None, scheduler=None if isinstance(scheduler, str) else scheduler,
                                 cost_functions=cost_functions, progress=progress, address=address,
                                 callbacks=callbacks)
    spec = spec_of(evaluator)
    evaluator = as_evaluator(evaluator)
    spec = spec or spec_of(evaluator)
    config = space if isinstance(space, SearchConfig) else SearchConfig.create(
        space, strategy, num_samples, constraints, objectives, strategy_options=strategy_options,
        batch_size=batch_size, max_concurrent=max_concurrent, seed=seed, cost_functions=cost_functions,
        metrics=_declared_metrics(evaluator))

    scheduler_spec = scheduler
    scheduler = resolve_scheduler(scheduler, evaluator.num_fidelities)
    multi_fidelity = scheduler is not None and evaluator.num_fidelities > 1
    max_concurrent = int(config.max_concurrent or evaluator.preferred_concurrency)
    batch_sizing: Dict[str, Any] = {"source": "multi-fidelity" if multi_fidelity else "user"}
    if multi_fidelity:
        batch = 1
    elif config.batch_size:
        batch = int(config.batch_size)
    else:   # before Ray starts: a probe evaluates a few archs in this process
        batch, batch_sizing = resolve_batch_size(evaluator, config.space, config.num_samples, max_concurrent,
                                                 config.seed)
    config = config.with_batching(batch, max_concurrent)
    check_scheduler(scheduler, config.max_concurrent, config.num_samples)
    searcher = config.make_searcher()
    name = name or default_name(storage, f"{config.space.name}-{searcher.strategy_name}")
    directory = storage / name
    prepare_new(directory, overwrite)
    ensure_ray(address)  # only once the configuration is known to be good
    check_trial_gpus(float(dict(trial_resources or evaluator.trial_resources).get("gpu", 0.0)), address)
    directory.mkdir(parents=True, exist_ok=True)
    # what a resume needs to rebuild the very same searcher, evaluator and run (plain JSON)
    meta = {"name": name, **config.to_json(), "multi_fidelity": multi_fidelity,
            "scheduler": scheduler_spec if isinstance(scheduler_spec, str) else None,
            "scheduler_object": scheduler is not None and not isinstance(scheduler_spec, str),
            "tune_loggers": bool(tune_loggers), "tensorboard": bool(tensorboard), "trial_resources": dict(trial_resources or evaluator.trial_resources),
            "max_trial_failures": int(max_trial_failures), "batch_sizing": batch_sizing,
            **({"evaluator": spec.to_json()} if spec is not None else {}), **dict(extra_meta or {}),
            "status": "running", "started_at": time.time()}
    write_search_meta(directory, meta)
    return _run(directory, meta, searcher, evaluator, scheduler, Journal(directory, fresh=True), resume=False,
                progress=progress, callbacks=callbacks)


def resume_search(path: Union[str, Path], evaluator: Any = None, *, strategy: Optional[ArchSearcher] = None,
                  scheduler: Any = None, cost_functions: Sequence[CostFn] = (), progress: bool = True,
                  address: Optional[str] = None, callbacks: Sequence[Any] = ()) -> SearchResult:
    """Continue the search in experiment directory ``path`` whose driver died (killed,
    interrupted, or its machine lost).

    The journal is the source of truth (see :mod:`raynas.resume`): the searcher is rebuilt from
    ``search.json`` and replays every recorded proposal and observation, which brings it to the
    exact state it had when the driver died; the trials then in flight run again first (archs
    they had reported are answered from the journal, not evaluated again), and the search goes
    on as the uninterrupted one would have. Nothing pickled is read: not Tune's ``tuner.pkl``,
    not its searcher or experiment state.

    ``evaluator`` is built anew (the old pool died with the driver). Left out, it is rebuilt from
    the spec ``search.json`` recorded (a table, or a pool serving a supernet checkpoint: see
    :mod:`raynas.evaluators.spec`; such a pool is shut down when the search ends); pass one for
    any other evaluator, of the same kind the search started with. A search started with a
    strategy object (not a name), a Tune scheduler object or ``cost_functions`` needs them
    again: pass fresh ones, configured as before. Callbacks of the first run are not restored:
    pass them again as ``callbacks``.
    """
    directory = Path(path).expanduser().resolve()
    meta, events = check_resumable(directory)
    config = SearchConfig.from_json(meta, strategy=strategy, cost_functions=cost_functions, where=directory)
    if meta.get("scheduler_object") and scheduler is None:
        raise ConfigError(f"the search in {directory} ran with a Tune scheduler object; pass one again (scheduler=...)")
    prepared = None
    if evaluator is None:
        if not meta.get("evaluator"):
            raise ConfigError(f"the search in {directory} does not record how to rebuild its evaluator (it was not "
                              "a table or a pool of a supernet checkpoint): pass one again (evaluator=...)")
        prepared = EvaluatorSpec.from_json(meta["evaluator"]).prepare(config.space)   # checked before Ray starts
    searcher = config.make_searcher()
    replay_journal(searcher, events, where=directory / JOURNAL_FILE)
    searcher.reissue_live()
    ensure_ray(address)
    owned = prepared.build() if prepared is not None else None
    try:
        evaluator = as_evaluator(owned if owned is not None else evaluator)
        scheduler = resolve_scheduler(scheduler if scheduler is not None else meta.get("scheduler"),
                                      evaluator.num_fidelities)
        for key in ("finished_at", "interrupted_at", "failed_at"):
            meta.pop(key, None)
        meta["status"] = "running"
        meta.setdefault("resumed_at", []).append(time.time())
        write_search_meta(directory, meta)
        return _run(directory, meta, searcher, evaluator, scheduler, Journal(directory, fresh=False), resume=True,
                    progress=progress, callbacks=callbacks, known=reported_rows(events))
    finally:
        if owned is not None and hasattr(owned, "shutdown"):
            owned.shutdown()


def _tune_view_callbacks(directory: Path, meta: Mapping[str, Any], collector, primary):
    """Per-arch Tune rows and TensorBoard (``tensorboard``), and Tune's own per-trial TensorBoard
    and CSV loggers (``tune_loggers``); their JSON logger would clash with the per-arch rows."""
    out = []
    if meta.get("tensorboard", True):
        from raynas.tune_view import ArchRowLogger
        out.append(ArchRowLogger(directory, collector.latest, primary))
    if meta.get("tune_loggers"):
        from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback
        out += [CSVLoggerCallback(), TBXLoggerCallback()]
    return out


def _run(directory: Path, meta: Dict[str, Any], searcher: ArchSearcher, evaluator: Evaluator, scheduler,
         journal: Journal, *, resume: bool, progress: bool, callbacks: Sequence[Any],
         known: Optional[Mapping[str, Mapping[str, Any]]] = None) -> SearchResult:
    """Build a fresh Tune run of ``searcher`` in ``directory`` and fit it (a new search, or a
    resumed one whose searcher has replayed the journal)."""
    from ray import tune

    from raynas.collector import ResultsCollector

    objectives = searcher.objectives
    collector = ResultsCollector(directory, searcher.cost_model, resume=resume, journal=journal,
                                 known_costs=searcher.known_costs)
    searcher.attach_journal(journal)
    all_callbacks = [collector, *_tune_view_callbacks(directory, meta, collector, objectives[0]), *callbacks]
    if progress:
        from raynas.progress import SearchProgress
        all_callbacks.append(SearchProgress(int(meta["num_samples"]), objectives[0], collector))
    from raynas.trial_release import ReleaseFinishedBatches
    all_callbacks.append(ReleaseFinishedBatches())   # last: everyone else has read the batch
    trainable = _make_trainable(evaluator, objectives[0], bool(meta.get("multi_fidelity")),
                                meta.get("trial_resources") or evaluator.trial_resources, known)
    primary = objectives[0]
    tune_config = tune.TuneConfig(
        # a cap, not a target: the searcher ends the search when its budget of archs is spent
        # (a batch can close early)
        search_alg=searcher, scheduler=scheduler, num_samples=int(meta["num_samples"]),
        max_concurrent_trials=int(meta["max_concurrent"]), reuse_actors=True,
        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        metric=primary.metric if scheduler is not None else None,
        mode=primary.mode if scheduler is not None else None)
    run_config = tune.RunConfig(name=directory.name, storage_path=str(directory.parent), callbacks=all_callbacks,
                                verbose=0, log_to_file=False, failure_config=tune.FailureConfig(
                                    max_failures=int(meta.get("max_trial_failures", DEFAULT_TRIAL_RETRIES))))
    tuner = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
    return _fit(tuner, searcher, collector, objectives, directory, meta, all_callbacks)


def _check_no_search_arguments(strategy, num_samples, constraints, objectives, strategy_options, batch_size,
                               max_concurrent, seed, cost_functions) -> None:
    given = [name for name, value, default in (
        ("strategy", strategy, "evolution"), ("num_samples", num_samples, 100), ("constraints", constraints, None),
        ("objectives", objectives, None), ("strategy_options", strategy_options, None),
        ("batch_size", batch_size, None), ("max_concurrent", max_concurrent, None), ("seed", seed, 0),
        ("cost_functions", tuple(cost_functions), ())) if value != default]
    if given:
        raise ConfigError(f"search() got a SearchConfig and also {', '.join(given)}: set them in the SearchConfig")


def _fit(tuner, searcher: ArchSearcher, collector, objectives, directory: Path,
         meta: Dict[str, Any], callbacks: Sequence[Any] = ()) -> SearchResult:
    # Tune's SIGINT handler is off (see tune_environment): Ctrl+C raises KeyboardInterrupt here,
    # which leaves the journal exactly as a kill would (a consistent prefix of the run) and is
    # reported as an interruption. Tune's automatic loggers stay off: raynas.tune_view writes the
    # per-arch rows, and _tune_view_callbacks adds Tune's own loggers when asked (tune_loggers).
    interrupted = False
    try:
        with tune_environment(loggers=False, sigint_handler=False):
            tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # Tune wraps errors raised inside the searcher; surface ours as-is
        _set_status(directory, meta, "failed")
        root = _raynas_cause(exc)
        if root is not None:
            raise root from None
        raise
    finally:
        collector.flush()
        collector.journal.close()
        _close_arch_loggers(callbacks)
    if interrupted:
        from raynas.progress import SearchProgress

        for callback in callbacks:   # Tune would close the bar at the end of the experiment
            if isinstance(callback, SearchProgress):
                callback.close()
        _set_status(directory, meta, "interrupted")
        raise SearchInterrupted(
            f"the search stopped after {len(collector)} of {meta.get('num_samples')} archs; its folder is "
            f"consistent: continue it with raynas search --resume {directory} (raynas.resume_search)", directory)
    meta["exhausted"] = bool(searcher.exhausted)
    _set_status(directory, meta, "finished")
    # the table on disk, opened lazily: the driver never holds a second copy of a large sweep
    return SearchResult(None, objectives, directory, meta, table=directory / RESULTS_FILE)


def _close_arch_loggers(callbacks: Sequence[Any]) -> None:
    """Close the per-arch row files and TensorBoard writer now (Tune does it at the experiment's
    end, which an interrupted or failed run never reaches): left to tensorboardX's exit hook,
    its writer thread can wait forever for a stop signal at interpreter shutdown."""
    from raynas.tune_view import ArchRowLogger

    for callback in callbacks:
        if isinstance(callback, ArchRowLogger):
            callback.on_experiment_end([])


def _set_status(directory: Path, meta: Dict[str, Any], status: str) -> None:
    meta["status"] = status
    meta[f"{status}_at"] = time.time()
    write_search_meta(directory, meta)


def check_search_inputs(space: Union[str, SearchSpace], *, strategy: Union[str, ArchSearcher] = "evolution",
                        strategy_options: Optional[Mapping[str, Any]] = None, num_samples: Any = 100,
                        constraints: Any = None, objectives: Any = None, seed: int = 0,
                        cost_functions: Sequence[CostFn] = (), metrics: Optional[Sequence[str]] = None):
    """Check everything about a search that can be checked without Ray or an evaluator running
    (the CLI calls it before starting either; see :meth:`SearchConfig.create`).

    Returns ``(space, objectives, constraints, cost_model)``.
    """
    config = SearchConfig.create(space, strategy, num_samples, constraints, objectives,
                                 strategy_options=strategy_options, seed=seed, cost_functions=cost_functions,
                                 metrics=metrics)
    return config.space, config.objectives, config.constraints, config.cost_model


def _declared_metrics(evaluator: Evaluator) -> Optional[Sequence[str]]:
    """The metrics an evaluator says it reports, where that list is exact (a function's is not)."""
    if isinstance(evaluator, FunctionEvaluator):
        return None
    return tuple(evaluator.metrics) or None


def _make_trainable(evaluator: Evaluator, primary, multi_fidelity: bool, resources: Mapping[str, float],
                    known: Optional[Mapping[str, Mapping[str, Any]]] = None):
    from ray import tune

    trainable = tune.with_parameters(TRAINABLES.get("evaluate"), evaluator=evaluator, metric=primary.metric,
                                     mode=primary.mode, multi_fidelity=multi_fidelity, known=dict(known or {}))
    return tune.with_resources(trainable, dict(resources))


def check_resumable(directory: Union[str, Path], *, replay: bool = False, strategy: Optional[ArchSearcher] = None,
                    cost_functions: Sequence[CostFn] = ()):
    """``(meta, journal events)`` of an experiment that can be resumed, or one clear error
    (checked before anything expensive starts). Only JSON is read. ``replay=True`` also replays
    the journal into a fresh searcher (milliseconds for most strategies; what
    :func:`resume_search` does first), so a journal that does not replay is refused too."""
    from raynas.errors import CheckpointError
    from raynas.search_config import REQUIRED_KEYS

    directory = Path(directory)
    meta = read_search_meta(directory)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{directory / 'search.json'} lacks {', '.join(missing)}: it was not written by "
                              "raynas.search (or by an older raynas), so the search cannot be resumed")
    events = read_journal(directory)
    check_replayable(events, directory / JOURNAL_FILE)
    if replay:
        config = SearchConfig.from_json(meta, strategy=strategy, cost_functions=cost_functions, where=directory)
        replay_journal(config.make_searcher(), events, where=directory / JOURNAL_FILE)
    return meta, events


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
