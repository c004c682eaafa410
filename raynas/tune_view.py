"""What Ray Tune's own tools see of a search: one row per evaluated arch.

A Tune trial of a search evaluates a batch of archs and reports once (Tune costs milliseconds per
report, evaluations can cost microseconds). :class:`ArchRowLogger` turns each batch report into
one Tune result row per arch in the trial's ``result.json`` -- what
``tune.ExperimentAnalysis(dir).trial_dataframes`` and ``ResultGrid``'s ``Result.metrics_dataframe``
read -- with the arch's metrics, ``arch_id``, ``arch_index`` (its place in ``results.parquet``),
``training_iteration`` (its place in the trial) and the time it finished; and writes a
TensorBoard log of the whole search, ``OUTPUT/NAME/tensorboard/``: every metric of every arch
against the arch index (and wall time), and the best value of the primary objective so far. It
runs in the driver: no trial reports more, and a few file writes per arch cost microseconds.

With a batch of one arch per trial (``batch_size=1``), ``ExperimentAnalysis(dir).dataframe()``
itself has one row per arch. :func:`search_trainable` gives the trainable of a finished search,
for ``tune.Tuner.restore(dir, trainable=...)`` and its ``ResultGrid``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ray.tune.logger import LoggerCallback

from raynas.objectives import Objective

RESULT_FILE = "result.json"       # Tune's EXPR_RESULT_FILE: what its analysis tools read first
PARAMS_FILE = "params.json"       # Tune's EXPR_PARAM_FILE: a trial's config (its archs' ids and decisions)
TENSORBOARD_DIR = "tensorboard"
#: Tune's bookkeeping fields of a report, not metrics of an arch
_TUNE_FIELDS = {"batch", "num_ok", "num_archs", "done", "training_iteration", "trial_id", "date", "timestamp",
                "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore",
                "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint"}


class ArchRowLogger(LoggerCallback):
    """Per-arch Tune result rows (``result.json`` of each trial, with its ``params.json``) and a per-arch
    TensorBoard log.

    ``rows``: the rows the results collector stored from the report at hand (arch_id -> row with
    its ``order``: :attr:`raynas.collector.ResultsCollector.latest`), filled before this callback
    runs (it comes after the collector in the callback list).
    """

    def __init__(self, directory: Union[str, Path], rows: Mapping[str, Mapping[str, Any]], primary: Objective,
                 tensorboard: bool = True, flush_seconds: float = 5.0) -> None:
        self.directory = Path(directory)
        self.rows = rows
        self.primary = primary
        self.tensorboard = tensorboard
        self.flush_seconds = flush_seconds
        self._files: Dict[str, Any] = {}
        self._iteration: Dict[str, int] = {}
        self._writer = None
        self._best = primary.worst()
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ Tune's logger hooks
    def log_trial_start(self, trial) -> None:
        if trial.trial_id in self._files:
            return
        trial.init_local_path()
        path = Path(trial.local_path)
        path.mkdir(parents=True, exist_ok=True)
        self._files[trial.trial_id] = (path / RESULT_FILE).open("a", encoding="utf-8")
        # what Tune's JSON logger would write (ExperimentAnalysis.get_all_configs reads it)
        (path / PARAMS_FILE).write_text(json.dumps(trial.config, indent=2, sort_keys=True, default=str),
                                        encoding="utf-8")
        self._iteration.setdefault(trial.trial_id, 0)

    def log_trial_result(self, iteration: int, trial, result: Dict) -> None:
        if trial.trial_id not in self._files:
            self.log_trial_start(trial)
        handle = self._files[trial.trial_id]
        ids = set(trial.config.get("arch_ids") or ())   # a pool's trial holds thousands: no list scans
        for report in result.get("batch") or []:
            if not isinstance(report, Mapping) or report.get("arch_id") not in ids:
                continue
            row = self._row(trial, report)
            handle.write(json.dumps(row, allow_nan=False, default=str) + "\n")
            if self.tensorboard:
                self._scalars(row)
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self._flush()

    def log_trial_end(self, trial, failed: bool = False) -> None:
        handle = self._files.pop(trial.trial_id, None)
        if handle is not None:
            handle.close()

    def on_experiment_end(self, trials, **info) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ rows
    def _row(self, trial, report: Mapping[str, Any]) -> Dict[str, Any]:
        key = report["arch_id"]
        stored = self.rows.get(key, {})
        self._iteration[trial.trial_id] = self._iteration.get(trial.trial_id, 0) + 1
        row: Dict[str, Any] = {k: v for k, v in stored.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               and k not in ("order", "finished_at")}
        row.update({k: v for k, v in report.items() if k not in _TUNE_FIELDS and k != "arch_id"
                    and isinstance(v, (int, float)) and math.isfinite(float(v))})
        finished = stored.get("finished_at")
        finished = finished.timestamp() if hasattr(finished, "timestamp") else float(finished or time.time())
        row.update({"arch_id": key, "arch_index": int(stored.get("order", -1)), "arch": stored.get("arch"),
                    "error": report.get("error") or stored.get("error"), "trial_id": trial.trial_id,
                    "training_iteration": self._iteration[trial.trial_id], "timestamp": int(finished),
                    "time_finished": finished})
        return row

    def _scalars(self, row: Mapping[str, Any]) -> None:
        if row["error"] or row["arch_index"] < 0:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        writer = self._ensure_writer()
        step, when = row["arch_index"], row["time_finished"]
        # one event per arch holding all its scalars (what add_scalar would write as one event each)
        values = [Summary.Value(tag=f"arch/{name}", simple_value=float(value)) for name, value in row.items()
                  if name not in ("arch_index", "training_iteration", "timestamp", "time_finished")
                  and isinstance(value, (int, float)) and not isinstance(value, bool)]
        value = row.get(self.primary.metric)
        if isinstance(value, (int, float)) and self.primary.better(value, self._best):
            self._best = value
        if isinstance(self._best, (int, float)) and math.isfinite(self._best):
            values.append(Summary.Value(tag=f"best/{self.primary.metric}", simple_value=float(self._best)))
        writer.write_event(Event(summary=Summary(value=values), step=step, wall_time=when))

    def _ensure_writer(self):
        """The event file, written in this thread. SummaryWriter would hand each event to a
        writer thread through a multiprocessing queue: ~0.1 ms per event, a quarter of an arch's
        whole path through the driver (profile of a 20,000-arch tabular sweep), and a thread that
        can hang the interpreter's exit when a run is interrupted."""
        if self._writer is None:
            from tensorboardX.event_file_writer import EventsWriter

            folder = self.directory / TENSORBOARD_DIR
            folder.mkdir(parents=True, exist_ok=True)
            self._writer = EventsWriter(str(folder / "events"))   # SummaryWriter's file naming
        return self._writer

    def _flush(self) -> None:
        for handle in self._files.values():
            handle.flush()
        if self._writer is not None:
            self._writer.flush()
        self._last_flush = time.monotonic()


def search_trainable(experiment: Union[str, Path], evaluator: Any = None):
    """The Tune trainable of the search in ``experiment`` (a folder ``raynas.search`` wrote),
    evaluating with ``evaluator`` (a pool, an Evaluator, a function; None: a trainable that only
    lets Tune read the results, and refuses to evaluate): what
    ``tune.Tuner.restore(experiment, trainable=...)`` needs to give Tune's ``ResultGrid``::

        grid = tune.Tuner.restore(path, trainable=raynas.search_trainable(path)).get_results()

    (to continue an interrupted search use ``raynas.resume_search``, which replays the journal).
    """
    from raynas.objectives import parse_objectives
    from raynas.results import read_search_meta
    from raynas.tuner import _make_trainable, as_evaluator

    meta = read_search_meta(experiment)
    evaluator = as_evaluator(evaluator if evaluator is not None else _ReadOnly(str(experiment)))
    primary = parse_objectives(meta.get("objectives"))[0]
    return _make_trainable(evaluator, primary, bool(meta.get("multi_fidelity")),
                           meta.get("trial_resources") or evaluator.trial_resources)


class _ReadOnly:
    """The evaluator of a trainable restored only to read results."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def __call__(self, arch) -> Dict[str, float]:
        from raynas.errors import ConfigError
        raise ConfigError(f"search_trainable({self.experiment!r}) was built without an evaluator: it reads "
                          "results only; continue a search with raynas.resume_search")


def tensorboard_dir(experiment: Union[str, Path]) -> Optional[Path]:
    """The per-arch TensorBoard log of an experiment, if it has one."""
    path = Path(experiment) / TENSORBOARD_DIR
    return path if path.is_dir() else None
