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
        # the winner: the best measured arch under the target among everything verified
        under = [r["metrics"]["accuracy"] for r in result.verified if r["latency_ms"] <= target["target_ms"]]
        assert target["winner"]["real"] == max(under) >= max(c["real"] for c in target["candidates"])
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
              "--latency-column", "lat_pixel3", "--latency-column", "lat_titan_rtx_1", "--latency", "6,12",
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
    assert [[c["arch_id"] for c in t["candidates"]] for t in second["devices"][0]["targets"]] == \
        [[c["arch_id"] for c in t["candidates"]] for t in record["devices"][0]["targets"]]


def test_specialize_cli_rejects_bad_input(tables, tmp_path, capsys):
    accuracy_table, latency_table = tables
    base = ["specialize", "--table", str(accuracy_table), "--space", "nb201", "--latency", "5", "--output", str(tmp_path)]
    assert main(base + ["--latency-column", "lat_pixel3"]) == 2
    assert "--latency-table" in capsys.readouterr().err
    assert main(base + ["--latency-column", "lat_nonexistent", "--latency-table", str(latency_table)]) == 2
    assert "lat_nonexistent" in capsys.readouterr().err
    # --device is a torch device everywhere; the old spelling says what to write instead
    assert main(base + ["--device", "lat_pixel3", "--latency-table", str(latency_table)]) == 2
    assert "--latency-column" in capsys.readouterr().err
    assert main(base + ["--latency-table", str(latency_table)]) == 2   # a per-arch table needs its column
    assert "--latency-column" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())   # nothing was written


def test_looser_targets_never_get_worse_winners_and_low_tau_warns(tables, tmp_path, capsys):
    """Nested targets: every arch meeting a tight target meets the looser ones, so a looser
    target's winner is at least as good; a predictor whose held-out tau is below --min-tau is
    reported and winners come from measurements only."""
    accuracy_table, latency_table = tables
    out = tmp_path / "out"
    argv = ["specialize", "--table", str(accuracy_table), "--space", "nb201", "--table-metric",
            "accuracy=c10valid_valid_12ep", "--latency-table", str(latency_table), "--latency-column",
            "lat_pixel3", "--latency", "25,5,8,12", "--fit-samples", "30", "--holdout", "20",
            "--predictor-kind", "gbt", "--predictor-option", "n_estimators=2", "--min-tau", "0.99",
            "--search-samples", "60", "--verify-top", "1", "--strategy", "random", "--output", str(out),
            "--name", "nested"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "below --min-tau 0.99" in err
    record = json.loads((out / "nested" / "specialize.json").read_text())
    assert record["predictor"]["trusted"] is False and record["targets_ms"] == [5.0, 8.0, 12.0, 25.0]
    targets = record["devices"][0]["targets"]
    assert [t["target_ms"] for t in targets] == [5.0, 8.0, 12.0, 25.0]
    measured = pd.read_parquet(out / "nested" / "evaluations.parquet")
    real = TabularEvaluator(accuracy_table, create_space("nb201"), metrics={"accuracy": "c10valid_valid_12ep"})
    values = []
    for t in targets:
        w = t["winner"]
        assert t["selection"] == "measured" and w["latency_ms"] <= t["target_ms"]
        assert w["real"] == real.evaluate([w["arch"]])[0]["accuracy"]
        values.append(w["real"])
    assert values == sorted(values)   # never worse as the target loosens
    # the loosest target's winner is the best measured arch under it (fit, held-out or verified)
    lat = TabularCost(latency_table, {"latency_ms": "lat_pixel3"}, space=create_space("nb201"))
    from raynas.arch import arch_from_json
    best_fit = max(a for a, arch in zip(measured["accuracy"], measured["arch"])
                   if lat(arch_from_json(arch))["latency_ms"] <= 25.0)
    assert values[-1] >= best_fit


def test_specialize_checks_table_coverage_before_any_work(tmp_path, capsys):
    """The Note10 tables price 160-224 px; a CIFAR space (24-32 px) is refused at once, naming
    'raynas lut build', before Ray, the pool or any measurement starts, and nothing is written."""
    from conftest import shared_data_path
    from raynas.checkpoint import save_supernet_checkpoint

    lut = shared_data_path("ofa/note10_latency_lut")
    space = create_space("ofa_mbv3_cifar", width_mult=0.25)
    checkpoint = save_supernet_checkpoint(tmp_path / "ckpt", space.build_supernet(10),
                                          {"num_classes": 10, "dataset": "digits"})
    out = tmp_path / "out"
    assert main(["specialize", "--checkpoint", str(checkpoint), "--latency-table", str(lut), "--latency", "20",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no latency table for resolution(s) [24, 28, 32]" in err and "raynas lut build --space ofa_mbv3_cifar" in err
    assert not out.exists()
