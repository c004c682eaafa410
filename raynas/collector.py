"""The Tune callback that turns each trial's per-arch report into rows of the results table
and events of the journal (see :mod:`raynas.ledger`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import pandas as pd
from ray.tune import Callback

from raynas.arch import Arch, canonical_json
from raynas.io import atomic_path
from raynas.results import RESULTS_FILE, is_missing, load_results_table, records_frame


class ResultsCollector(Callback):
    """Tune callback: turns each trial's ``batch`` report into table rows.

    Rows are keyed by arch_id; an arch keeps its first row unless a later report is of a higher
    fidelity (a resumed search re-runs interrupted trials, which report what was recorded). Every
    event goes to the journal at once (see :mod:`raynas.ledger`), and the table is rewritten
    atomically to ``results.parquet`` every ``flush_seconds`` and at the end, so a killed driver
    leaves a readable table and loses nothing.

    ``resume=True`` continues the experiment in ``directory``: its rows are loaded first.
    ``journal``: the :class:`raynas.ledger.Journal` to append to (default: a new one).
    """

    def __init__(self, directory: Path, cost_model=None, flush_seconds: float = 5.0,
                 existing: Optional[pd.DataFrame] = None, resume: bool = False, journal=None) -> None:
        from raynas.ledger import JOURNAL_FILE, Journal

        self.directory = Path(directory)
        self.cost_model = cost_model
        self.flush_seconds = flush_seconds
        self.rows: Dict[str, Dict[str, Any]] = {}
        self._last_flush = time.monotonic()
        self._dirty = False
        if resume and existing is None and ((self.directory / RESULTS_FILE).exists()
                                            or (self.directory / JOURNAL_FILE).exists()):
            existing = load_results_table(self.directory)
        if existing is not None and not existing.empty:
            for rec in existing.to_dict("records"):
                self.rows[rec["arch_id"]] = {k: v for k, v in rec.items() if not is_missing(v)}
        self._order = max((int(r.get("order", -1)) for r in self.rows.values()), default=-1) + 1
        # shared with the searcher, whose proposals and observations go to the same file
        self.journal = journal if journal is not None else Journal(self.directory, fresh=not resume)

    def on_trial_result(self, iteration: int, trials, trial, result: Dict, **info) -> None:
        archs = {key: arch for key, arch in zip(trial.config.get("arch_ids", []), trial.config.get("archs", []))}
        batch = [row for row in result.get("batch") or [] if isinstance(row, dict)]
        stored = []
        for row in batch:
            key = row.get("arch_id")
            if key in archs and self.add_row(key, archs[key], row, trial.trial_id):
                stored.append(self.rows[key])
        self.journal.append({"event": "result", "trial": trial.trial_id, "batch": batch,
                             "records": stored})
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def add_row(self, key: str, arch: Arch, metrics: Mapping[str, Any], trial_id: str) -> bool:
        """Store the row of ``key``; False when the arch already has one of equal or higher fidelity."""
        previous = self.rows.get(key)
        if previous is not None and float(metrics.get("fidelity", 0.0) or 0.0) <= float(previous.get("fidelity", 0.0) or 0.0):
            return False
        record: Dict[str, Any] = {}
        if self.cost_model is not None:
            try:
                record.update(self.cost_model(arch))
            except Exception:  # noqa: BLE001 - a cost failure must not lose the evaluation
                pass
        record.update({k: v for k, v in metrics.items() if k != "arch_id"})
        record.update({"arch_id": key, "arch": canonical_json(arch), "trial_id": trial_id,
                       "finished_at": time.time(),
                       "order": previous["order"] if previous else self._order})
        if previous is None:
            self._order += 1
        self.rows[key] = record
        self._dirty = True
        return True

    def on_trial_complete(self, iteration: int, trials, trial, **info) -> None:
        self.journal.append({"event": "complete", "trial": trial.trial_id})

    def on_trial_error(self, iteration: int, trials, trial, **info) -> None:
        # The trial itself crashed for good (not the evaluator): record its archs as failed, once.
        stored = []
        for key, arch in zip(trial.config.get("arch_ids", []), trial.config.get("archs", [])):
            if key not in self.rows and self.add_row(
                    key, arch, {"error": "trial failed before reporting (see Tune's trial log)"}, trial.trial_id):
                stored.append(self.rows[key])
        self.journal.append({"event": "error", "trial": trial.trial_id, "records": stored})

    def on_experiment_end(self, trials, **info) -> None:
        self.flush()
        self.journal.close()

    def dataframe(self) -> pd.DataFrame:
        return records_frame(list(self.rows.values()))

    def flush(self) -> None:
        if not self._dirty and (self.directory / RESULTS_FILE).exists():
            return
        with atomic_path(self.directory / RESULTS_FILE, suffix=".parquet") as tmp:
            self.dataframe().to_parquet(tmp, index=False)
        self._last_flush = time.monotonic()
        self._dirty = False
