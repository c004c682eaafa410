"""A progress bar for searches (Tune's own console output is switched off)."""
from __future__ import annotations

import math
import sys
from typing import Any, Mapping, Optional

from ray.tune import Callback

from raynas.objectives import Objective


class SearchProgress(Callback):
    """tqdm bar over evaluated archs, showing the best value of the primary objective."""

    def __init__(self, total: int, objective: Objective,
                 done: Optional[Mapping[str, Mapping[str, Any]]] = None) -> None:
        """``done``: rows already recorded (arch_id -> row), when a search is resumed."""
        self.total = total
        self.objective = objective
        self.best = objective.worst()
        self.seen: set = set()
        self.failed = 0
        self.bar = None
        for key, row in (done or {}).items():
            self._count(key, row)

    def _count(self, key: str, row: Mapping[str, Any]) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        if row.get("error"):
            self.failed += 1
            return True
        value = row.get(self.objective.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self.objective.better(value, self.best):
            self.best = value
        return True

    def _ensure_bar(self):
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, initial=len(self.seen), desc="search", unit="arch",
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        return self.bar

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        bar = self._ensure_bar()
        new = sum(self._count(row.get("arch_id"), row) for row in result.get("batch") or [] if isinstance(row, dict))
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
