"""Python API of differentiable search on Ray Tune: ``darts_search`` and ``retrain``.

Each trial is one search (or one retraining) in its own process; ``grid`` sweeps any option
(``{"schedule": ["constant", "linear"], "seed": [0, 1, 2]}``), fractional ``gpus_per_trial``
packs several small searches on one GPU, and a Tune scheduler (e.g. ASHA on ``val_accuracy``)
can stop poor searches after any epoch. Results: one row per trial plus every epoch's record,
also written to ``<storage>/<name>/darts_results.json``.

A sweep's folder is an experiment like any search's: ``search.json`` (its configuration and
status), the journal (every epoch's report, appended as it arrives) and ``results.parquet``
(one row per trial: its derived arch, ``arch_id``, swept options and last report), so
``raynas.SearchResult.load(folder)`` reads it like any other search. Rows are keyed by trial
(``"row_key": "trial_id"`` in ``search.json``): two seeds may derive the same arch.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from raynas.differentiable.config import DartsSearchConfig, JsonConfig, RetrainConfig, merge_variant
from raynas.errors import ConfigError
from raynas.io import atomic_path, atomic_write_json, json_safe
from raynas.ledger import Journal
from raynas.registry import TRAINABLES
from raynas.runtime import DEFAULT_STORAGE, tune_environment

#: keys Tune adds to every result; kept out of the per-epoch history
_TUNE_KEYS = {"timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration",
              "trial_id", "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip",
              "config", "time_since_restore", "iterations_since_restore", "experiment_tag"}


@dataclass
class SweepResult:
    """Trials of a sweep: ``trials`` (config, history, final record, error) and ``table``."""

    trials: List[Dict[str, Any]]
    directory: Path
    kind: str
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def table(self):
        """One row per trial (pandas DataFrame): its options that vary and its last record."""
        import pandas as pd

        rows = []
        for t in self.trials:
            last = t["history"][-1] if t["history"] else {}
            rows.append({"trial": t["trial_id"], **t["swept"], "epochs_run": len(t["history"]),
                         **{k: v for k, v in last.items() if k != "epoch"},
                         "error": t.get("error")})
        return pd.DataFrame(rows)


class _Collector:
    """Tune callback keeping every trial's reports in the driver (no Tune loggers needed), and
    writing each one to the sweep's journal as it arrives (one row per trial: its last report)."""

    def __init__(self, progress: bool, describe: Callable[[Dict[str, Any], Dict[str, Any]], str],
                 journal: Any = None, swept: Sequence[str] = ()) -> None:
        from ray.tune import Callback

        collector = self

        class _Callback(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                record = {k: v for k, v in result.items() if k not in _TUNE_KEYS}
                collector.results.setdefault(trial.trial_id, []).append(record)
                collector.configs[trial.trial_id] = dict(trial.config)
                collector.store(trial.trial_id, record)
                if progress:
                    print(describe(merge_variant(trial.config), result), file=sys.stderr, flush=True)

            def on_trial_error(self, iteration, trials, trial, **info):
                collector.configs[trial.trial_id] = dict(trial.config)
                collector.errors[trial.trial_id] = str(getattr(trial, "error_file", "") or "failed")
                collector.store(trial.trial_id, None, error=collector.errors[trial.trial_id])

        self.results: Dict[str, List[Dict[str, Any]]] = {}
        self.configs: Dict[str, Dict[str, Any]] = {}
        self.errors: Dict[str, str] = {}
        self.rows: Dict[str, Dict[str, Any]] = {}
        self.journal = journal
        self.swept = tuple(swept)
        self.callback = _Callback()

    def store(self, trial_id: str, record: Optional[Mapping[str, Any]], error: Optional[str] = None) -> None:
        """The trial's row from its latest report (or its failure), journaled at once."""
        previous = self.rows.get(trial_id, {})
        row = table_row(trial_id, len(self.rows) if not previous else previous["order"],
                        merge_variant(self.configs.get(trial_id, {})), self.swept, record, error)
        if record is None and previous:
            row = {**previous, "error": error}
        self.rows[trial_id] = row
        if self.journal is not None:
            event = "result" if record is not None else "error"
            self.journal.append({"event": event, "trial": trial_id, "batch": [json_safe(dict(record or {}))],
                                 "records": [json_safe(row)]})


def table_row(trial_id: str, order: int, config: Mapping[str, Any], swept: Sequence[str],
              record: Optional[Mapping[str, Any]], error: Optional[str]) -> Dict[str, Any]:
    """A sweep trial as a results-table row: its derived arch, swept options, last report."""
    from raynas.arch import arch_id

    record = dict(record or {})
    arch_json = record.get("arch") if isinstance(record.get("arch"), str) else None
    row: Dict[str, Any] = {"order": order, "trial_id": trial_id, "arch": arch_json,
                           "arch_id": arch_id(json.loads(arch_json)) if arch_json else None, "error": error}
    row.update({k: v for k, v in config.items() if k in swept and k not in row and isinstance(v, (int, float, str))})
    row.update({k: v for k, v in record.items() if k not in row and isinstance(v, (int, float, str))
                and not isinstance(v, bool)})
    row["finished_at"] = time.time()
    return row


def _grid(base: JsonConfig, grid: Optional[Mapping[str, Sequence[Any]]],
          variants: Optional[Sequence[Mapping[str, Any]]]) -> Dict[str, List[Any]]:
    """Check each swept option (a known field, a non-empty list) and that every combination of
    a variant with the grid's values is a valid config."""
    grid = {k: list(v) for k, v in (grid or {}).items()}
    known = set(base.to_dict())
    for key, values in grid.items():
        if key not in known:
            raise ConfigError(f"cannot sweep unknown option '{key}'; options: {sorted(known)}")
        if not values:
            raise ConfigError(f"sweep option '{key}' has no values")
    if variants is not None:
        if not variants:
            raise ConfigError("variants must list at least one set of options")
        for variant in variants:
            overlap = sorted(set(variant) & set(grid))
            if overlap:
                raise ConfigError(f"options {overlap} are both in a variant and in the grid")
    for variant in (variants or [{}]):
        for combo in itertools.product(*grid.values()):
            type(base).from_any(base, **{**dict(variant), **dict(zip(grid, combo))})
    return grid


def absolute_paths(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Options with relative paths made absolute: Tune runs each trial in its own directory."""
    out = dict(options)
    data = out.get("data")
    if isinstance(data, str) and ":" in data:
        kind, _, path = data.partition(":")
        if path.strip() and not Path(path.strip()).expanduser().is_absolute():
            out["data"] = f"{kind}:{Path(path.strip()).expanduser().resolve()}"
    for key in ("table", "export_dir", "latency_table"):
        if isinstance(out.get(key), str) and out[key] and not (key == "latency_table" and out[key] == "measure"):
            out[key] = str(Path(out[key]).expanduser().resolve())
    data_options = out.get("data_options")
    if isinstance(data_options, Mapping) and isinstance(data_options.get("cache_dir"), str):
        out["data_options"] = {**data_options,
                               "cache_dir": str(Path(data_options["cache_dir"]).expanduser().resolve())}
    return out


def _run(kind: str, trainable: Callable, base: JsonConfig, grid: Optional[Mapping[str, Sequence[Any]]],
         variants: Optional[Sequence[Mapping[str, Any]]], *,
         describe: Callable[[Dict[str, Any], Dict[str, Any]], str], scheduler: Any, metric: str, mode: str,
         gpus_per_trial: float, cpus_per_trial: float, max_concurrent: Optional[int], name: Optional[str],
         storage_path: Union[str, Path], address: Optional[str], num_cpus: Optional[int],
         num_gpus: Optional[int], progress: bool, time_budget_s: Optional[float]) -> SweepResult:
    from ray import tune

    from raynas.runtime import check_trial_gpus, ensure_ray

    grid = _grid(base, grid, variants)
    if gpus_per_trial < 0 or cpus_per_trial <= 0:
        raise ConfigError(f"gpus_per_trial must be >= 0 and cpus_per_trial > 0, got "
                          f"{gpus_per_trial} and {cpus_per_trial}")
    ensure_ray(address, num_cpus=num_cpus, num_gpus=num_gpus)
    check_trial_gpus(gpus_per_trial, address)
    name = name or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = Path(storage_path).expanduser().resolve()
    directory = storage / name
    directory.mkdir(parents=True, exist_ok=True)
    param_space = absolute_paths(base.to_dict())
    param_space.update({k: tune.grid_search(v) for k, v in grid.items()})
    if variants is not None:
        param_space["variant"] = tune.grid_search([absolute_paths(v) for v in variants])
    resources = {"cpu": float(cpus_per_trial), "gpu": float(gpus_per_trial)}
    if time_budget_s is not None and not time_budget_s > 0:
        raise ConfigError(f"time_budget_s must be positive, got {time_budget_s}")
    started = time.time()
    meta = {"kind": kind, "name": name, "grid": grid, "variants": [dict(v) for v in variants or []],
            "base": base.to_dict(), "started_at": started, "metric": metric, "mode": mode,
            "objectives": [f"{metric}:{mode}"], "row_key": "trial_id", "status": "running"}
    from raynas.results import write_search_meta

    write_search_meta(directory, json_safe(meta))
    swept = list(grid) + sorted({k for v in variants or [] for k in v})
    collector = _Collector(progress, describe, Journal(directory, fresh=True), swept)
    tune_config = tune.TuneConfig(
        scheduler=scheduler, num_samples=1, max_concurrent_trials=max_concurrent, time_budget_s=time_budget_s,
        metric=metric if scheduler is not None else None, mode=mode if scheduler is not None else None)
    run_config = tune.RunConfig(name=name, storage_path=str(storage), callbacks=[collector.callback],
                                verbose=0, log_to_file=False)
    try:
        with tune_environment():
            grid_result = tune.Tuner(tune.with_resources(trainable, resources), param_space=param_space,
                                     tune_config=tune_config, run_config=run_config).fit()
    except BaseException:
        _finish_table(directory, meta, collector, "interrupted")
        raise
    trials = []
    for result in grid_result:
        trial_id = _trial_id(result, collector)
        config = merge_variant(result.config or {})
        error = _last_line(result.error) if result.error else collector.errors.get(trial_id)
        swept = {k: config.get(k) for k in grid}
        if variants is not None:
            swept.update({k: config.get(k) for v in variants for k in v})
        trials.append({"trial_id": trial_id, "config": config, "swept": swept,
                       "history": collector.results.get(trial_id, []), "error": error})
        if trial_id not in collector.rows:   # it failed before its first report
            collector.configs.setdefault(trial_id, dict(result.config or {}))
            collector.store(trial_id, None, error=error or "the trial ended without reporting")
        elif error:
            collector.rows[trial_id]["error"] = error
    _finish_table(directory, meta, collector, "finished")
    out = SweepResult(trials, directory, kind, meta)
    atomic_write_json(directory / "darts_results.json", json_safe({"meta": meta, "trials": trials}))
    return out


def _finish_table(directory: Path, meta: Dict[str, Any], collector: _Collector, status: str) -> None:
    """Write the sweep's results table and its final status (the journal is complete already)."""
    from raynas.results import RESULTS_FILE, records_frame, write_search_meta   # pandas: loaded when needed

    collector.journal.close()
    with atomic_path(directory / RESULTS_FILE, suffix=".parquet") as tmp:
        records_frame(list(collector.rows.values())).to_parquet(tmp, index=False)
    meta["status"] = status
    meta[f"{status}_at"] = time.time()
    write_search_meta(directory, json_safe(meta))


def _last_line(error: Any) -> str:
    lines = str(error).strip().splitlines()
    return (lines[-1] if lines else type(error).__name__)[:500]


def _trial_id(result: Any, collector: _Collector) -> str:
    metrics = result.metrics or {}
    if metrics.get("trial_id"):
        return str(metrics["trial_id"])
    for trial_id, config in collector.configs.items():  # a trial that never reported
        if config == dict(result.config or {}):
            return trial_id
    return "unknown"


def _describe_search(config: Dict[str, Any], result: Dict[str, Any]) -> str:
    extra = "".join(f" {k} {result[k]:.2f}" for k in (config.get("table_metrics") or {}) if k in result)
    return (f"[{result.get('method')} seed {config.get('seed')}] epoch {result.get('epoch')}/"
            f"{config.get('epochs')} T {result.get('temperature', float('nan')):.3g} train "
            f"{result.get('train_accuracy', float('nan')):.1f} val {result.get('val_accuracy', float('nan')):.1f} "
            f"skip {result.get('skip_connections')}{extra}{_latency_text(config, result)} {result.get('arch_str')}")


def _latency_text(config: Dict[str, Any], result: Dict[str, Any]) -> str:
    if "derived_latency_ms" not in result:
        return ""
    return (f" λ {config.get('latency_lambda', 0.0):g} E[lat] {result['expected_latency_ms']:.3f} "
            f"lat {result['derived_latency_ms']:.3f} ms")


def _describe_retrain(config: Dict[str, Any], result: Dict[str, Any]) -> str:
    test = result.get("test_accuracy")
    return (f"[retrain {str(result.get('arch_id'))} seed {config.get('seed')}] epoch {result.get('epoch')}/"
            f"{config.get('epochs')} train {result.get('train_accuracy', float('nan')):.1f}"
            + (f" test {test:.2f}" if test is not None else ""))


def darts_search(config: Any = None, *, grid: Optional[Mapping[str, Sequence[Any]]] = None,
                 variants: Optional[Sequence[Mapping[str, Any]]] = None, scheduler: Any = None, metric: str = "val_accuracy", mode: str = "max",
                 gpus_per_trial: float = 0.0, cpus_per_trial: float = 1.0,
                 max_concurrent: Optional[int] = None, name: Optional[str] = None,
                 storage_path: Union[str, Path] = DEFAULT_STORAGE, address: Optional[str] = None,
                 num_cpus: Optional[int] = None, num_gpus: Optional[int] = None, progress: bool = True,
                 time_budget_s: Optional[float] = None, **overrides: Any) -> SweepResult:
    """Differentiable searches on Ray Tune, one trial per combination of ``grid`` (times each of
    ``variants``, partial configs such as ``{"order": 2, "schedule": "constant"}``, if given).

    ``config`` is a :class:`DartsSearchConfig`, a dict or a JSON file; keyword ``overrides``
    replace its options. ``time_budget_s`` stops every trial once the sweep has run that long
    (their epochs so far are kept). Example (DARTS vs TD-DARTS, 3 seeds, 1/4 GPU per search)::

        darts_search({"space": "nb201", "data": "cifar10:<path>", "epochs": 50},
                     grid={"schedule": ["constant", "linear"], "seed": [0, 1, 2]},
                     gpus_per_trial=0.25)
    """
    base = DartsSearchConfig.from_any(config, **overrides)
    return _run("darts", TRAINABLES.get("darts_search"), base, grid, variants, describe=_describe_search,
                scheduler=scheduler, metric=metric, mode=mode, gpus_per_trial=gpus_per_trial,
                cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent, name=name,
                storage_path=storage_path, address=address,
                num_cpus=num_cpus, num_gpus=num_gpus, progress=progress, time_budget_s=time_budget_s)


def retrain(config: Any = None, *, grid: Optional[Mapping[str, Sequence[Any]]] = None,
            variants: Optional[Sequence[Mapping[str, Any]]] = None, scheduler: Any = None, metric: str = "test_accuracy", mode: str = "max",
            gpus_per_trial: float = 0.0, cpus_per_trial: float = 1.0,
            max_concurrent: Optional[int] = None, name: Optional[str] = None,
            storage_path: Union[str, Path] = DEFAULT_STORAGE, address: Optional[str] = None,
            num_cpus: Optional[int] = None, num_gpus: Optional[int] = None, progress: bool = True,
            time_budget_s: Optional[float] = None, **overrides: Any) -> SweepResult:
    """Train archs from scratch on Ray Tune (a :class:`RetrainConfig`; sweep e.g. ``arch`` or
    ``seed`` with ``grid``)."""
    base = RetrainConfig.from_any(config, **overrides)
    return _run("retrain", TRAINABLES.get("darts_retrain"), base, grid, variants, describe=_describe_retrain,
                scheduler=scheduler, metric=metric, mode=mode, gpus_per_trial=gpus_per_trial,
                cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent, name=name,
                storage_path=storage_path, address=address,
                num_cpus=num_cpus, num_gpus=num_gpus, progress=progress, time_budget_s=time_budget_s)
