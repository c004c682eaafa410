"""Per-device specialisation: predictor + latency per device, winners verified for real."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raynas import ConfigError, InfeasibleConstraintError, create_space
from raynas.cli.main import main
from raynas.evaluators.tabular import TabularCost, TabularEvaluator
from raynas.predictors import load_predictor, make_predictor
from raynas.predictors.specialize import fit_from_evaluations, specialize


@pytest.fixture(scope="module")
def tables():
    from conftest import shared_data_path

    return shared_data_path("nb201/nb201_cifar10.csv"), shared_data_path("hw/nb201_latency.csv")


def test_specialize_api_meets_every_target_and_verifies(tables):
    accuracy_table, latency_table = tables
    space = create_space("nb201")
    real = TabularEvaluator(accuracy_table, space, metrics={"accuracy": "c10valid_valid_12ep"})
    predictor, scores, evaluated = fit_from_evaluations(space, real, 80, kind="gbt", holdout=20,
                                                        predictor_options={"n_estimators": 60})
    assert len(evaluated) == 100 and scores["n"] == 20 and predictor.fit_info["num_train"] == 80
    latency = TabularCost(latency_table, {"latency_ms": "lat_pixel3"}, space=space)
    result = specialize(space, predictor, latency, [5.0, 15.0], verify=real, verify_top=2, search_samples=120,
                        device="pixel3", strategy_options={"population_size": 12, "sample_size": 4})
    for target in result.targets:
        assert target["num_searched"] == 120 and len(target["candidates"]) == 2
        for cand in target["candidates"]:
            assert cand["latency_ms"] <= target["target_ms"]
            assert cand["latency_ms"] == latency(cand["arch"])["latency_ms"]
            assert cand["predicted"] == pytest.approx(float(predictor.predict([cand["arch"]])[0]))
            assert cand["real"] == real.evaluate([cand["arch"]])[0]["accuracy"]
        assert target["winner"]["real"] == max(c["real"] for c in target["candidates"])
    # the front holds no verified arch that another beats on both accuracy and latency
    front = {r["arch_id"] for r in result.front}
    for row in result.verified:
        dominated = any(o["metrics"]["accuracy"] >= row["metrics"]["accuracy"] and o["latency_ms"] <= row["latency_ms"]
                        and (o["metrics"]["accuracy"], o["latency_ms"]) != (row["metrics"]["accuracy"], row["latency_ms"])
                        for o in result.verified)
        assert (row["arch_id"] in front) == (not dominated)
    with pytest.raises(InfeasibleConstraintError, match="latency_ms"):
        specialize(space, predictor, latency, [1e-6], verify=real)


def test_specialize_cli_two_devices_then_reuse_the_predictor(tables, tmp_path):
    accuracy_table, latency_table = tables
    common = ["specialize", "--table", str(accuracy_table), "--space", "nb201",
              "--table-metric", "accuracy=c10valid_valid_12ep", "--latency-table", str(latency_table),
              "--device", "lat_pixel3", "--device", "lat_titan_rtx_1", "--latency", "6", "--latency", "12",
              "--search-samples", "100", "--verify-top", "2", "--strategy-option", "population_size=10",
              "--output", str(tmp_path)]
    assert main(common + ["--name", "first", "--fit-samples", "60", "--holdout", "20", "--predictor-kind", "gbt",
                          "--predictor-option", "n_estimators=50"]) == 0
    record = json.loads((tmp_path / "first" / "specialize.json").read_text())
    assert [d["device"] for d in record["devices"]] == ["lat_pixel3", "lat_titan_rtx_1"]
    assert record["predictor"]["holdout"]["n"] == 20
    latencies = pd.read_csv(latency_table).set_index("arch_str")
    from spaces.nb201 import to_arch_str
    for device in record["devices"]:
        assert (tmp_path / "first" / device["plot"]).is_file()
        for target in device["targets"]:
            winner = target["winner"]
            assert winner["latency_ms"] <= target["target_ms"]
            assert winner["latency_ms"] == pytest.approx(latencies.loc[to_arch_str(winner["arch"]), device["device"]])
    predictor = load_predictor(tmp_path / "first" / "predictor", create_space("nb201"))
    assert predictor.kind == "gbt" and len(pd.read_parquet(tmp_path / "first" / "evaluations.parquet")) == 80
    # a second device run reuses the fitted predictor: nothing is measured to fit it again
    assert main(common[:-1] + [str(tmp_path), "--name", "second", "--predictor", str(tmp_path / "first" / "predictor")]) == 0
    second = json.loads((tmp_path / "second" / "specialize.json").read_text())
    assert second["predictor"]["loaded"] and not (tmp_path / "second" / "evaluations.parquet").exists()
    assert [t["winner"]["arch_id"] for t in second["devices"][0]["targets"]] == \
        [t["winner"]["arch_id"] for t in record["devices"][0]["targets"]]


def test_specialize_cli_rejects_bad_input(tables, tmp_path, capsys):
    accuracy_table, latency_table = tables
    base = ["specialize", "--table", str(accuracy_table), "--space", "nb201", "--latency", "5", "--output", str(tmp_path)]
    assert main(base + ["--device", "lat_pixel3"]) == 2
    assert "--latency-table" in capsys.readouterr().err
    assert main(base + ["--device", "lat_nonexistent", "--latency-table", str(latency_table)]) == 2
    assert "lat_nonexistent" in capsys.readouterr().err
