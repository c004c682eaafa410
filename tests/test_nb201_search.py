"""The NAS-Bench-201 search benchmark's smoke mode, through the real Tune path: a budget read off
the first archs of a longer run equals a run of that budget, and the record is complete."""
from __future__ import annotations

import json
import sys

from tests.conftest import PROJECT_ROOT, shared_data_path


def test_nb201_benchmark_smoke(ray_session, tmp_path):
    csv = shared_data_path("nb201/nb201_cifar10.csv")
    latency = shared_data_path("hw/nb201_latency.csv")
    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    try:
        import nb201_search as bench
    finally:
        sys.path.pop(0)
    common = ["--smoke", "--csv", str(csv), "--latency-csv", str(latency), "--strategies", "evolution",
              "--seeds", "1", "--budgets", "16,32", "--batch-size", "8", "--mo-seeds", "0", "--wall-probes", "0"]
    prefix = bench.main(common + ["--out", str(tmp_path / "prefix.json")])
    separate = bench.main(common + ["--budgets", "16", "--budget-mode", "separate", "--out", str(tmp_path / "sep.json")])
    by_budget = {r["budget"]: r for r in prefix["rows"]}
    assert sorted(by_budget) == [16, 32] and {r["run_budget"] for r in prefix["rows"]} == {32}
    # the 16-query result read off the 32-query run is the 16-query run's own result
    own = {r["budget"]: r for r in separate["rows"]}
    assert own[16]["arch_str"] == by_budget[16]["arch_str"] and own[16]["run_budget"] == 16
    assert by_budget[32]["best_signal"] >= by_budget[16]["best_signal"]
    assert by_budget[32]["evaluated"] == 32
    saved = json.loads((tmp_path / "prefix.json").read_text())
    assert saved["summary"]["evolution"]["32"]["seeds"] == 1 and saved["budget_mode"] == "prefix"
    assert 80 < saved["summary"]["evolution"]["32"]["mean"] <= 94.38
    assert "/work" not in saved["csv"]
