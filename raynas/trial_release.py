"""Keep the driver's memory flat in the sweep size: drop a finished trial's batch from Tune.

Tune keeps every trial object to the end of the experiment, and with it the trial's config (a
batch of up to hundreds of archs, held twice: the searcher's suggestion and Tune's deep copy),
its last result (every arch's metrics, plus a third copy of the config), a tag naming the
config's values, and JSON renderings of all of these that it caches for its experiment
checkpoints. For a 100,000-arch sweep that was ~2.3 KiB per arch in the driver, ~60% of its
growth (``benchmarks/sweep_memory.py``).

raynas needs none of it once the trial is over: the collector has written the rows to the
journal and the results table, the trial's folder has its ``params.json``, and the searcher has
been told (Tune calls the searcher and every other callback before this one, which is last in
the list). What stays is what Tune's own views read (``ExperimentAnalysis``): the ids of the
batch's archs in the config, and the flat numbers of the last result.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict

from ray.tune import Callback

# the archs themselves; their ids (a short string each) stay, as do a batch of one's decisions
BATCH_KEYS = ("archs",)


class ReleaseFinishedBatches(Callback):
    """Tune callback, last in the list: empties a finished or failed trial of its batch.

    It reaches into Tune's trial object (``run_metadata``, the JSON caches). Should a Tune
    release rename those, the search goes on and keeps the batches in memory, as before this
    callback, and one warning says so: a memory saving must not fail a user's search.
    """

    def __init__(self) -> None:
        self._broken = False

    def on_trial_complete(self, iteration: int, trials, trial, **info) -> None:
        self._release(trial)

    def on_trial_error(self, iteration: int, trials, trial, **info) -> None:
        self._release(trial)

    def _release(self, trial) -> None:
        if self._broken:
            return
        try:
            release_batch(trial)
        except AttributeError as exc:
            self._broken = True
            warnings.warn(f"raynas could not release finished trials' batches from this Ray Tune ({exc}); "
                          "the search goes on, holding ~2 KiB more per arch in the driver", RuntimeWarning,
                          stacklevel=2)


def release_batch(trial) -> None:
    """Drop ``trial``'s archs from its config and suggested parameters, its last result's
    per-arch rows and copy of the config, and the JSON that Tune cached of them (rebuilt small
    on the next checkpoint)."""
    _slim_config(trial.config)
    # what the searcher suggested, kept apart for Tune's console table (off in raynas)
    for key in (*BATCH_KEYS, "arch_ids"):
        trial.evaluated_params.pop(key, None)
    metadata = trial.run_metadata
    last = metadata.last_result
    if last:
        slim = {k: v for k, v in last.items() if k != "batch"}
        if isinstance(slim.get("config"), dict):
            slim["config"] = dict(slim["config"])
            _slim_config(slim["config"])
        metadata.last_result = slim
    trial.experiment_tag = str(trial.trial_id)
    trial.invalidate_json_state()
    metadata.invalidate_cache()


def _slim_config(config: Dict[str, Any]) -> None:
    for key in BATCH_KEYS:
        config.pop(key, None)
