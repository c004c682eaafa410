"""The Tune callback that turns each trial's per-arch report into rows of the results table
and events of the journal (see :mod:`raynas.ledger`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import pandas as pd
from ray.tune import Callback

from raynas.arch import Arch, canonical_json
from raynas.io import atomic_path
from raynas.results import RESULTS_FILE, ROW_GROUP_ROWS, is_missing, load_results_table, records_frame


class ResultsCollector(Callback):
    """Tune callback: turns each trial's ``batch`` report into table rows.

    Rows are keyed by arch_id; an arch keeps its first row unless a later report is of a higher
    fidelity (a resumed search re-runs interrupted trials, which report what was recorded). Every
    event goes to the journal at once (see :mod:`raynas.ledger`), and the table is rewritten
    atomically to ``results.parquet`` every ``flush_seconds`` and at the end, so a killed driver
    leaves a readable table and loses nothing. A flush converts only the rows stored since the
    last one and appends them to the Arrow table already written (dropping a written row that a
    later report replaced), so flushing a 100,000-row table costs its write, not a rebuild, and
    a written row is held only in Arrow's columns.

    ``resume=True`` continues the experiment in ``directory``: its rows are loaded first.
    ``journal``: the :class:`raynas.ledger.Journal` to append to (default: a new one).
    ``known_costs``: cost rows computed already (the searcher's constraint check), by arch_id.
    """

    def __init__(self, directory: Path, cost_model=None, flush_seconds: float = 5.0,
                 existing: Optional[pd.DataFrame] = None, resume: bool = False, journal=None,
                 known_costs: Optional[Callable[[str], Optional[Mapping[str, float]]]] = None) -> None:
        from raynas.ledger import JOURNAL_FILE, Journal

        self.directory = Path(directory)
        self.cost_model = cost_model
        self.known_costs = known_costs   # arch_id -> cost row already computed (the searcher's), or None
        self.flush_seconds = flush_seconds
        # What the driver keeps per arch is what a long sweep's memory grows by: a written row
        # lives only in the Arrow table (columnar, ~0.2 KiB), plus its key's fidelity and order.
        self._index: Dict[str, Tuple[float, int]] = {}   # arch_id -> (fidelity, order) of its row
        self._pending: Dict[str, Dict[str, Any]] = {}    # rows stored since the last flush
        self._replaced = False        # a row already written was replaced since the last flush
        self._written = None          # pyarrow Table of the rows in results.parquet
        #: rows stored (or, for a report that changed nothing, recalled) by the latest report,
        #: by arch_id: what the per-arch loggers after this callback read
        self.latest: Dict[str, Dict[str, Any]] = {}
        self._last_flush = time.monotonic()
        self._dirty = False
        if resume and existing is None and ((self.directory / RESULTS_FILE).exists()
                                            or (self.directory / JOURNAL_FILE).exists()):
            existing = load_results_table(self.directory)
        if existing is not None and not existing.empty:
            records = [{k: v for k, v in rec.items() if not is_missing(v)} for rec in existing.to_dict("records")]
            for rec in records:
                self._index[rec["arch_id"]] = (_fidelity(rec), int(rec["order"]))
            self._written = _arrow(records_frame(records))
        self._order = max((order for _, order in self._index.values()), default=-1) + 1
        # shared with the searcher, whose proposals and observations go to the same file
        self.journal = journal if journal is not None else Journal(self.directory, fresh=not resume)

    def __len__(self) -> int:
        """Archs with a row."""
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def on_trial_result(self, iteration: int, trials, trial, result: Dict, **info) -> None:
        archs = {key: arch for key, arch in zip(trial.config.get("arch_ids", []), trial.config.get("archs", []))}
        batch = [row for row in result.get("batch") or [] if isinstance(row, dict)]
        self.latest.clear()
        stored = []
        for row in batch:
            key = row.get("arch_id")
            if key not in archs:
                continue
            if self.add_row(key, archs[key], row, trial.trial_id):
                stored.append(self._pending[key])
            elif key in self._index:  # an equal re-report (a resumed trial): what the loggers need of it
                self.latest[key] = {"arch": canonical_json(archs[key]), "order": self._index[key][1]}
        self.journal.append({"event": "result", "trial": trial.trial_id, "batch": batch,
                             "records": stored})
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def add_row(self, key: str, arch: Arch, metrics: Mapping[str, Any], trial_id: str) -> bool:
        """Store the row of ``key``; False when the arch already has one of equal or higher fidelity."""
        previous = self._index.get(key)
        if previous is not None and _fidelity(metrics) <= previous[0]:
            return False
        record: Dict[str, Any] = {}
        known = self.known_costs(key) if self.known_costs is not None else None
        if known is not None:
            record.update(known)
        elif self.cost_model is not None:
            try:
                record.update(self.cost_model(arch))
            except Exception:  # noqa: BLE001 - a cost failure must not lose the evaluation
                pass
        record.update({k: v for k, v in metrics.items() if k != "arch_id"})
        order = previous[1] if previous is not None else self._order
        record.update({"arch_id": key, "arch": canonical_json(arch), "trial_id": trial_id,
                       "finished_at": time.time(), "order": order})
        if previous is None:
            self._order += 1
        elif key not in self._pending:
            self._replaced = True
        self._index[key] = (_fidelity(record), order)
        self._pending[key] = record
        self.latest[key] = record
        self._dirty = True
        return True

    def on_trial_complete(self, iteration: int, trials, trial, **info) -> None:
        self.journal.append({"event": "complete", "trial": trial.trial_id})

    def on_trial_error(self, iteration: int, trials, trial, **info) -> None:
        # The trial itself crashed for good (not the evaluator): record its archs as failed, once.
        # ``latest`` then holds exactly these rows (not the previous report's), for the progress bar.
        self.latest.clear()
        stored = []
        for key, arch in zip(trial.config.get("arch_ids", []), trial.config.get("archs", [])):
            if key not in self._index and self.add_row(
                    key, arch, {"error": "trial failed before reporting (see Tune's trial log)"}, trial.trial_id):
                stored.append(self._pending[key])
        self.journal.append({"event": "error", "trial": trial.trial_id, "records": stored})

    def on_experiment_end(self, trials, **info) -> None:
        self.flush()
        self.journal.close()

    def table(self):
        """Every row as an Arrow table, in ``order`` (what the next flush writes)."""
        return self._table()

    def dataframe(self) -> pd.DataFrame:
        return self._table().to_pandas()

    def flush(self) -> None:
        """Write ``results.parquet`` atomically (when anything changed since the last flush)."""
        import pyarrow.parquet as pq

        if not self._dirty and (self.directory / RESULTS_FILE).exists():
            return
        table = self._table()
        with atomic_path(self.directory / RESULTS_FILE, suffix=".parquet") as tmp:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
        self._written = table
        self._pending.clear()
        self._replaced = False
        self._last_flush = time.monotonic()
        self._dirty = False

    def _table(self):
        """The rows written before with those stored since, converted once: a row replaced since
        is dropped from the written part, and the whole is put back in ``order`` when needed."""
        import pyarrow as pa
        import pyarrow.compute as pc

        fresh = list(self._pending.values())
        if self._written is None:
            return _arrow(records_frame(fresh))
        if not fresh:
            return self._written
        written = self._written
        if self._replaced:
            written = written.filter(pc.invert(pc.is_in(written.column("arch_id"),
                                                        value_set=pa.array(list(self._pending)))))
        part = _arrow(records_frame(fresh))
        table = pa.concat_tables([written, part], promote_options="permissive")
        last = written.column("order")[-1].as_py() if written.num_rows else -1
        if min(int(r["order"]) for r in fresh) <= last:
            table = table.sort_by("order")
        return table.select(_column_order(table.column_names))


def _fidelity(row: Mapping[str, Any]) -> float:
    return float(row.get("fidelity", 0.0) or 0.0)


def _arrow(frame: pd.DataFrame):
    """A results frame as a plain Arrow table (no pandas metadata, so parts concatenate)."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def _column_order(names) -> list:
    from raynas.results import _FIXED_COLUMNS

    front = [c for c in _FIXED_COLUMNS if c in names]
    return front + sorted(c for c in names if c not in front)
