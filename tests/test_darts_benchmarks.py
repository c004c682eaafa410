"""The DARTS benchmarks' smoke modes: every part runs (through Tune) and the report holds what
the GPU runs report, with values that make sense."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, shared_data_path

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))


def test_nb201_benchmark_smoke(ray_session, tmp_path):
    import darts_nb201

    table = shared_data_path("nb201/nb201_cifar10.csv")
    out = tmp_path / "nb201.json"
    assert darts_nb201.main(["--smoke", "--table", str(table), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["methods"]) == {"darts1", "darts2", "td-darts1"}
    for method, summary in report["methods"].items():
        assert summary["completed"] == 1 and not summary["errors"]
        assert len(summary["curve"]) == 2 and 10.0 <= summary["test_accuracy_mean"] <= 94.38
    temperatures = [c["temperature"] for c in report["methods"]["td-darts1"]["curve"]]
    assert temperatures == pytest.approx([10.0, 0.1])
    assert set(report["checks"]) == {"td_darts_mean_at_least_93", "td_darts_above_darts1",
                                     "td_darts_above_darts2"}
    assert report["published"]["optimum"] == 94.37


def test_nb201_benchmark_inline_runner_selections_and_resume(tmp_path):
    """One search after another in-process, saved after each; --resume keeps them and runs only
    the missing ones; both cell selections, the per-epoch CSV and the curves plot are written."""
    import csv

    import darts_nb201

    table = shared_data_path("nb201/nb201_cifar10.csv")
    out = tmp_path / "inline.json"
    common = ["--smoke", "--runner", "inline", "--eval-images", "32", "--table", str(table), "--out", str(out)]
    assert darts_nb201.main(common + ["--methods", "darts1,gdas1"]) == 0
    first = json.loads(out.read_text())
    assert first["complete"] and first["runner"] == "inline"
    assert [(t["method"], t["seed"]) for t in first["trials"]] == [("darts1", 0), ("gdas1", 0)]
    for method in ("darts1", "gdas1"):
        selections = first["methods"][method]["selections"]
        assert set(selections) == {"final", "best_search_val", "best_derived_val"}
        history = next(t for t in first["trials"] if t["method"] == method)["history"]
        best = max(reversed(history), key=lambda r: r["search_val_accuracy"])
        assert selections["best_search_val"]["epochs"] == [best["epoch"]]
        assert selections["best_search_val"]["test_accuracy"] == [best["test_accuracy"]]
        assert selections["final"]["test_accuracy"] == [history[-1]["test_accuracy"]]
        derived = max(reversed(history), key=lambda r: r["derived_val_accuracy"])
        assert selections["best_derived_val"]["epochs"] == [derived["epoch"]]
    rows = list(csv.DictReader((tmp_path / "inline_epochs.csv").open()))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"darts1", "gdas1"}
    assert (tmp_path / "inline_curves.png").stat().st_size > 0
    assert (tmp_path / "inline_alphas_seed0.png").stat().st_size > 0
    with pytest.raises(SystemExit):  # an existing result is never replaced unasked
        darts_nb201.main(common + ["--methods", "darts1"])
    assert darts_nb201.main(common + ["--methods", "darts1,gdas1,td-darts1", "--resume"]) == 0
    second = json.loads(out.read_text())
    assert [(t["method"], t["seed"]) for t in second["trials"]] == [("darts1", 0), ("gdas1", 0), ("td-darts1", 0)]
    assert second["trials"][:2] == first["trials"]
    # --report-only trains nothing: it re-summarises the stored searches and says what is missing
    (tmp_path / "inline_epochs.csv").unlink()
    assert darts_nb201.main(common + ["--methods", "darts1,gdas1,td-darts1,darts2", "--report-only"]) == 0
    partial = json.loads(out.read_text())
    assert not partial["complete"] and partial["trials"] == second["trials"]
    assert partial["command"] == second["command"] and "--report-only" in partial["report_command"]
    assert partial["methods"]["darts2"]["completed"] == 0
    assert partial["methods"]["td-darts1"]["selections"] == second["methods"]["td-darts1"]["selections"]
    assert len(list(csv.DictReader((tmp_path / "inline_epochs.csv").open()))) == 6
    with pytest.raises(SystemExit):  # nothing to report on
        darts_nb201.main(common[:-1] + [str(tmp_path / "absent.json"), "--report-only"])


def test_darts_space_benchmark_smoke(ray_session, tmp_path):
    import darts_space

    out = tmp_path / "space.json"
    assert darts_space.main(["--smoke", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["timing"]) == {"order1", "order2"}
    assert report["timing"]["order2"]["seconds_per_step"] > 0
    from raynas import create_space
    arch = create_space("darts").validate(report["search"]["arch"])
    assert [h["epoch"] for h in report["search"]["history"]] == [1, 2]
    assert report["retrain"]["params"] > 0 and 0 <= report["retrain"]["test_accuracy"] <= 100
    assert report["retrain"]["history"][0]["arch_id"] == __import__("raynas").arch_id(arch)


def test_full_protocol_file_is_valid():
    """configs/darts_full.json holds DARTS' protocol: 50 search epochs, 600 retrain epochs."""
    from raynas.differentiable.config import DartsSearchConfig, RetrainConfig
    from spaces.darts import DARTS_V2

    protocol = json.loads((PROJECT_ROOT / "configs" / "darts_full.json").read_text())
    search = DartsSearchConfig.from_any(protocol["search"])
    retrain = RetrainConfig.from_any({**protocol["retrain"], "arch": DARTS_V2})
    assert (search.epochs, search.batch_size, search.supernet_options) == (50, 64, {"channels": 16, "layers": 8})
    assert search.method == "td-darts2" and search.half_size is None
    assert (retrain.epochs, retrain.cutout, retrain.drop_path_prob, retrain.auxiliary_weight) == (600, 16, 0.2, 0.4)
    assert retrain.space_options == {"channels": 36, "layers": 20, "auxiliary": True}


def test_latency_front_benchmark_smoke(ray_session, tmp_path):
    import darts_latency_front

    table = shared_data_path("nb201/nb201_cifar10.csv")
    latency = shared_data_path("hw/nb201_latency.csv")
    out = tmp_path / "front.json"
    assert darts_latency_front.main(["--smoke", "--table", str(table), "--latency-csv", str(latency),
                                     "--lambda-multipliers", "0,3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["lambda_multiplier"] for r in rows] == pytest.approx([0.0, 3.0])
    assert all(r["epochs_run"] == 2 and not r["error"] and 10.0 <= r["c10_test_200ep"] <= 94.38 for r in rows)
    assert all(r["real_latency_ms"] > 0 and r["table_latency_ms"] >= 0 for r in rows)
    assert report["latency_table"]["agreement_with_measured"]["archs"] == 15625
    assert set(report["monotonicity"]) == {"real_latency_non_increasing", "table_latency_non_increasing",
                                           "expected_latency_non_increasing"}
    assert (tmp_path / "front.png").stat().st_size > 1000 and (tmp_path / "front_op_table.json").is_file()
