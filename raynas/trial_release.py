"""Keep the driver's memory flat in the sweep size: drop a finished trial's batch from Tune.

Tune keeps every trial object to the end of the experiment, and with it the trial's config (a
batch of up to hundreds of archs, held twice: the searcher's suggestion and Tune's deep copy),
its last result (every arch's metrics, plus a third copy of the config), a tag naming the
config's values, and JSON renderings of all of these that it caches for its experiment
checkpoints. For a 100,000-arch sweep that was ~2.3 KiB per arch in the driver, ~60% of its
growth (``benchmarks/sweep_memory.py``).

raynas needs none of it once the trial is over: the collector has written the rows to the
journal and the results table, and the searcher has been told (Tune calls the searcher and every
other callback before this one, which is last in the list). What stays is what Tune's own
summary reads: the flat numbers of the last result and the batch's size.
"""
from __future__ import annotations

from typing import Any, Dict

from ray.tune import Callback

# the batch; a batch of one also carries its decisions, small, which Tune's views show
BATCH_KEYS = ("archs", "arch_ids")


class ReleaseFinishedBatches(Callback):
    """Tune callback, last in the list: empties a finished or failed trial of its batch."""

    def on_trial_complete(self, iteration: int, trials, trial, **info) -> None:
        release_batch(trial)

    def on_trial_error(self, iteration: int, trials, trial, **info) -> None:
        release_batch(trial)


def release_batch(trial) -> None:
    """Replace ``trial``'s batch in its config, suggested parameters and last result by its size,
    and drop the JSON that Tune cached of them (rebuilt small on the next checkpoint)."""
    size = len(trial.config.get("arch_ids") or ())
    _slim_config(trial.config, size)
    _slim_config(trial.evaluated_params, size)
    metadata = trial.run_metadata
    last = metadata.last_result
    if last:
        metadata.last_result = _slim_result(last, size)
    trial.experiment_tag = str(trial.trial_id)
    trial.invalidate_json_state()
    metadata.invalidate_cache()


def _slim_config(config: Dict[str, Any], size: int) -> None:
    for key in BATCH_KEYS:
        config.pop(key, None)
    config["batch_released"] = size


def _slim_result(result: Dict[str, Any], size: int) -> Dict[str, Any]:
    slim = {k: v for k, v in result.items() if k != "batch"}
    if isinstance(slim.get("config"), dict):
        slim["config"] = dict(slim["config"])
        _slim_config(slim["config"], size)
    return slim
