"""A progress bar for searches (Tune's own console output is switched off)."""
from __future__ import annotations

import math
import sys
from typing import Any, Mapping

from ray.tune import Callback

from raynas.objectives import Objective


class SearchProgress(Callback):
    """tqdm bar over evaluated archs, showing the best value of the primary objective.

    It reads the results collector (which comes before it in the callback list): the count of
    archs with a row and the rows the latest report stored, so it keeps nothing per arch. A
    resumed search starts the bar at the rows already recorded, with their best value.
    """

    def __init__(self, total: int, objective: Objective, collector) -> None:
        self.total = total
        self.objective = objective
        self.collector = collector
        self.best = objective.worst()
        self.failed = 0
        self.bar = None
        self._shown = len(collector)
        if self._shown:
            self._summarise(collector.table())

    def _summarise(self, table) -> None:
        """Best value and failures of the rows already recorded (one pass over two columns)."""
        names = table.column_names
        if "error" in names:
            self.failed = sum(1 for error in table.column("error").to_pylist() if error)
        if self.objective.metric in names:
            values = [v for v in table.column(self.objective.metric).to_pylist()
                      if isinstance(v, (int, float)) and math.isfinite(v)]
            if values:
                self.best = max(values) if self.objective.mode == "max" else min(values)

    def _count(self, row: Mapping[str, Any]) -> None:
        if row.get("error"):
            self.failed += 1
            return
        value = row.get(self.objective.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self.objective.better(value, self.best):
            self.best = value

    def _ensure_bar(self):
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, initial=self._shown, desc="search", unit="arch",
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        return self.bar

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._update()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        # a crashed trial's archs get error rows from the collector: count them as failed
        self._update()

    def _update(self) -> None:
        """Count the rows the collector stored in the callback at hand and advance the bar."""
        bar = self._ensure_bar()
        for row in self.collector.latest.values():
            if "trial_id" in row:   # stored by this report (not an equal re-report's recall)
                self._count(row)
        new = len(self.collector) - self._shown
        self._shown += new
        if new:
            bar.update(new)
            postfix = {f"best {self.objective.metric}": f"{self.best:.4g}"}
            if self.failed:
                postfix["failed"] = self.failed
            bar.set_postfix(postfix, refresh=False)

    def on_experiment_end(self, trials, **info) -> None:
        self.close()

    def close(self) -> None:
        """End the bar (also when the run stops without Tune ending the experiment)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
