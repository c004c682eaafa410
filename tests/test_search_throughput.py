"""benchmarks/search_throughput.py on tiny settings: every method measured, and the search's
table equals the in-process driver's at every batch size (so the rates compare equal work)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import shared_data_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_throughput_benchmark_measures_equal_work(ray_session, tmp_path):
    import search_throughput

    table = shared_data_path("nb201/nb201_cifar10.csv")
    out = tmp_path / "throughput.json"
    search_throughput.main(["--table", str(table), "--archs", "40", "--batch-sizes", "4,16",
                            "--plain-tune-trials", "3", "--optuna-archs", "30", "--out", str(out)])
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    tuned = [r for r in rows if r["method"] == "raynas.search"]
    assert [(r["strategy"], r["batch_size"]) for r in tuned] == [
        ("random", 4), ("random", 16), ("evolution", 4), ("evolution", 16)]
    assert all(r["same_archs_as_inline"] and r["archs"] == 40 for r in tuned)
    assert tuned[0]["trials"] == 10 and tuned[1]["trials"] == 3
    assert {r["method"] for r in rows} == {"inline", "raynas.search", "plain tune", "optuna ask/tell"}
    assert all(r["archs_per_s"] > 0 and r["load_1m"] is not None for r in rows)


def test_throughput_benchmark_default_batch_and_profile(ray_session, tmp_path):
    """No batch size given: the search sizes it from the table's declared cost (as large as the
    budget allows), the in-process driver runs the same size, and the profile is recorded."""
    import search_throughput

    out = tmp_path / "throughput.json"
    search_throughput.main(["--table", str(shared_data_path("nb201/nb201_cifar10.csv")), "--archs", "64",
                            "--strategies", "random", "--batch-sizes", "default", "--plain-tune-trials", "2",
                            "--optuna-archs", "10", "--profile", "--tensorboard", "on,off", "--out", str(out)])
    saved = json.loads(out.read_text())
    tuned = [r for r in saved["rows"] if r["method"] == "raynas.search"]
    # with and without the per-arch TensorBoard log, in turn: the same work either way
    assert [r["tensorboard"] for r in tuned] == [True, False]
    for row in tuned:
        assert row["batch_setting"] == "default" and row["batch_size"] == 64
        assert row["batch_sizing"]["source"] == "declared" and row["same_archs_as_inline"]
    ratio = tuned[1]["archs_per_s"] / tuned[0]["archs_per_s"]
    assert saved["medians"][1]["median_off_over_on"] == round(ratio, 3)
    assert saved["profile"]["archs"] == 64 and len(saved["profile"]["by_own_time"]) == 15


def test_each_arch_is_costed_once_per_search(ray_session, tmp_path):
    """Under a constraint the searcher computes each proposal's costs; the results table and the
    strategy's observations reuse that row instead of computing it again, and it is the row
    stored (equal to the cost model's)."""
    from collections import Counter

    from ray.tune import Callback

    import raynas
    from raynas.arch import canonical_json

    space = raynas.create_space("synthetic", num_layers=6, num_choices=4, seed=0)
    calls: Counter = Counter()
    state = {"counting": False}

    def latency(arch):
        if state["counting"]:
            calls[canonical_json(arch)] += 1
        return {"latency": float(sum(arch["ops"]))}

    class CountFromStart(Callback):   # the feasibility probe before the run is not counted
        def setup(self, **info):
            state["counting"] = True

    result = raynas.search(space, lambda arch: {"score": space.score(arch)}, strategy="evolution",
                           num_samples=60, batch_size=8, objectives=["score", "latency:min"],
                           constraints="latency<=12", cost_functions=[latency], name="costed",
                           storage_path=tmp_path, progress=False, callbacks=[CountFromStart()],
                           strategy_options={"population_size": 12, "sample_size": 4})
    df = result.df
    assert len(df) == 60 and (df["latency"] <= 12).all()
    assert all(calls[a] == 1 for a in df["arch"]), Counter(calls[a] for a in df["arch"])
    assert list(df["latency"]) == [float(sum(raynas.arch.arch_from_json(a)["ops"])) for a in df["arch"]]
