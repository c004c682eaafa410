"""Tune callbacks the search tests share."""
from __future__ import annotations

from ray.tune import Callback


class InterruptAfter(Callback):
    """Ctrl+C after ``n`` completed trials (the search then stops as a kill would leave it)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.seen += 1
        if self.seen >= self.n:
            raise KeyboardInterrupt
