"""A progress bar for searches (Tune's own console output is switched off)."""
from __future__ import annotations

import math
import sys

from ray.tune import Callback

from raynas.objectives import Objective


class SearchProgress(Callback):
    """tqdm bar over evaluated archs, showing the best value of the primary objective."""

    def __init__(self, total: int, objective: Objective) -> None:
        self.total = total
        self.objective = objective
        self.best = objective.worst()
        self.seen: set = set()
        self.failed = 0
        self.bar = None

    def _ensure_bar(self):
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, desc="search", unit="arch", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.5)
        return self.bar

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        bar = self._ensure_bar()
        new = 0
        for row in result.get("batch") or []:
            key = row.get("arch_id")
            if key in self.seen:
                continue
            self.seen.add(key)
            new += 1
            if row.get("error"):
                self.failed += 1
                continue
            value = row.get(self.objective.metric)
            if value is not None and math.isfinite(value) and self.objective.better(value, self.best):
                self.best = value
        if new:
            bar.update(new)
            postfix = {f"best {self.objective.metric}": f"{self.best:.4g}"}
            if self.failed:
                postfix["failed"] = self.failed
            bar.set_postfix(postfix, refresh=False)

    def on_experiment_end(self, trials, **info) -> None:
        if self.bar is not None:
            self.bar.close()
