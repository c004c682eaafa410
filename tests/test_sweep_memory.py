"""benchmarks/sweep_memory.py in smoke mode: the generated table is the space, each sweep runs
in a process of its own under the constraint, and its wall time and RSS samples are recorded."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ray.tune import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_sweep_memory_smoke_records_rss_per_run(tmp_path):
    import sweep_memory

    out = tmp_path / "sweep.json"
    sweep_memory.main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["table"]["rows"] == 4 ** 6 and 600 < saved["table"]["feasible"] < 4 ** 6
    runs = saved["runs"]
    assert [r["archs"] for r in runs] == [300, 600]
    for run in runs:
        assert run["batch_sizing"]["source"] == "declared" and run["batch_size"] >= 128
        assert run["all_satisfy_constraint"]
        assert run["driver_rss_mib_peak"] >= run["driver_rss_mib_before"] > 50
        assert run["worker_rss_mib_peak"] > 50 and len(run["rss_samples"]) >= 2
    assert "driver_kib_per_extra_arch" in saved


def _tabular_search(tmp_path, num_layers: int = 8):
    """A synthetic space, its every arch in a generated table, and a search over it."""
    import raynas
    from raynas.evaluators.tabular import TabularEvaluator
    import sweep_memory

    table = sweep_memory.make_table(tmp_path, num_layers, 4, seed=0)
    space = raynas.create_space("synthetic", **table["space"])
    evaluator = TabularEvaluator(table["table"], space=space, key="arch", metrics={"score": "score"}).check()

    def search(num_samples: int, name: str, callbacks=()):
        return raynas.search(space, evaluator, num_samples=num_samples, strategy="random", objectives="score",
                             seed=0, storage_path=str(tmp_path), name=name, progress=False, callbacks=callbacks,
                             strategy_options={"dedup": "arch"})
    return search


class _TrialWatch(Callback):
    """What Tune holds of each trial while it ends (as user callbacks see it) and at the end."""

    def __init__(self) -> None:
        import tracemalloc

        self.tracemalloc = tracemalloc
        self.batch_at_complete: list = []
        self.held_at_end: list = []
        self.traced_at_end = 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.batch_at_complete.append(len(trial.config.get("archs", [])))

    def on_experiment_end(self, trials, **info) -> None:
        self.traced_at_end = self.tracemalloc.get_traced_memory()[0]
        self.held_at_end = [("archs" in t.config or "archs" in t.evaluated_params
                             or "batch" in (t.last_result or {}) or "archs" in (t.last_result or {}).get("config", {}),
                             len(t.get_json_state()[0])) for t in trials]


def test_finished_trials_leave_no_batch_in_tune(ray_session, tmp_path):
    search = _tabular_search(tmp_path)
    watch = _TrialWatch()
    result = search(1600, "released", callbacks=[watch])
    assert len(result) == 1600
    # callbacks (the collector's, a user's) still see the whole batch when the trial ends ...
    assert sum(watch.batch_at_complete) == 1600 and min(watch.batch_at_complete) > 1
    # ... and at the end Tune holds none of it, nor a JSON rendering of it: only the arch ids
    # (~70 bytes each, as the config and as the suggested parameters; it was ~550 with the archs)
    assert watch.held_at_end and not any(held for held, _ in watch.held_at_end)
    assert max(size for _, size in watch.held_at_end) < 100 * max(watch.batch_at_complete) + 10_000


def test_driver_memory_per_arch_is_bounded(ray_session, tmp_path):
    """Python objects still alive at the end of a sweep, per extra arch: the arch ids kept to
    deduplicate and the index of stored rows (~1 KiB). It was 3.8 KiB while Tune held every
    batch and the collector every row as a dict; the bound is 1.5 KiB."""
    import tracemalloc

    search = _tabular_search(tmp_path)
    search(200, "warmup")
    traced = {}
    tracemalloc.start()
    try:
        for size in (1000, 4000):
            watch = _TrialWatch()
            search(size, f"sweep{size}", callbacks=[watch])
            traced[size] = watch.traced_at_end
    finally:
        tracemalloc.stop()
    per_arch_kib = (traced[4000] - traced[1000]) / 3000 / 1024
    print(f"traced driver memory: {per_arch_kib:.2f} KiB per extra arch")
    assert per_arch_kib < 1.5, f"{per_arch_kib:.2f} KiB per arch"


def test_a_tune_without_the_expected_trial_fields_only_warns():
    from raynas.trial_release import ReleaseFinishedBatches

    class OtherTrial:   # a Tune whose trial object lost run_metadata
        config = {"archs": [{"ops": [0]}], "arch_ids": ["a"]}
        evaluated_params: dict = {}

    release = ReleaseFinishedBatches()
    with pytest.warns(RuntimeWarning, match="could not release"):
        release.on_trial_complete(0, [], OtherTrial())
    release.on_trial_complete(0, [], OtherTrial())   # once: no second warning, no error
