"""Tabular evaluation: lookups equal the table, pickles are small, errors name the fix."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from raynas import DataError, canonical_json, create_space
from raynas.evaluators import TabularCost, TabularEvaluator
from raynas.evaluators.tabular import load_table
from spaces.nb201 import from_arch_str
from conftest import shared_data_path

NB201 = "nb201/nb201_cifar10.csv"
LATENCY = "hw/nb201_latency.csv"


@pytest.fixture(scope="module")
def nb201_path():
    return shared_data_path(NB201)


@pytest.fixture(scope="module")
def nb201_table(nb201_path):
    return pd.read_csv(nb201_path)


def test_lookups_return_the_table_values(nb201_path, nb201_table):
    ev = TabularEvaluator(nb201_path, metrics={"accuracy": "c10valid_valid_12ep", "test": "c10_test_200ep"})
    assert ev.metrics == ("accuracy", "test")
    rows = np.random.default_rng(0).choice(len(nb201_table), size=50, replace=False)
    archs = [from_arch_str(nb201_table["arch_str"].iloc[r]) for r in rows]
    for r, got in zip(rows, ev.evaluate(archs)):
        assert got == {"accuracy": nb201_table["c10valid_valid_12ep"].iloc[r],
                       "test": nb201_table["c10_test_200ep"].iloc[r]}
    best = nb201_table.loc[nb201_table["index"] == 6111, "arch_str"].item()
    assert ev.lookup(from_arch_str(best))["test"] == pytest.approx(94.3733)
    # a list of columns reports them under their own names; None reports every numeric column
    listed = TabularEvaluator(nb201_path, metrics=["params_mb"]).lookup(archs[0])
    assert listed == {"params_mb": nb201_table["params_mb"].iloc[rows[0]]}
    everything = TabularEvaluator(nb201_path).lookup(archs[0])
    assert set(everything) == {"index", "c10valid_valid_12ep", "c10valid_valid_200ep", "c10_test_12ep",
                               "c10_test_200ep", "params_mb"}
    assert len(ev) == 15625 and ev.keys()[6111] == best


def test_fidelities_report_low_then_high(nb201_path, nb201_table):
    ev = TabularEvaluator(nb201_path, metrics={"accuracy": "c10valid_valid_200ep"},
                          fidelities=[{"accuracy": "c10valid_valid_12ep"}, {"accuracy": "c10valid_valid_200ep"}])
    arch = from_arch_str(nb201_table["arch_str"].iloc[1])
    assert ev.num_fidelities == 2
    assert [m["accuracy"] for m in ev.evaluate_fidelities(arch)] == [
        nb201_table["c10valid_valid_12ep"].iloc[1], nb201_table["c10valid_valid_200ep"].iloc[1]]


def test_pickles_as_path_and_options_only(nb201_path, nb201_table):
    ev = TabularEvaluator(nb201_path, metrics={"accuracy": "c10valid_valid_12ep"})
    arch = from_arch_str(nb201_table["arch_str"].iloc[7])
    ev.lookup(arch)  # the table is loaded in this process...
    blob = pickle.dumps(ev)
    assert len(blob) < 2000  # ...but never travels with the evaluator
    assert pickle.loads(blob).lookup(arch) == ev.lookup(arch)
    assert load_table(nb201_path, "arch_str") is load_table(nb201_path, "arch_str")  # one load per process


def test_tabular_cost_serves_a_latency_column(nb201_table):
    path = shared_data_path(LATENCY)
    lat = pd.read_csv(path)
    cost = TabularCost(path, metrics={"latency_ms": "lat_pixel3"}).check()
    arch = from_arch_str(lat["arch_str"].iloc[42])
    assert cost(arch) == {"latency_ms": lat["lat_pixel3"].iloc[42]}
    lo, hi = cost.bounds()["latency_ms"]
    assert lo == lat["lat_pixel3"].min() and hi == lat["lat_pixel3"].max()
    assert pickle.loads(pickle.dumps(cost))(arch) == cost(arch)


def _small_table(tmp_path, nb201_table, rows=5):
    path = tmp_path / "small.csv"
    nb201_table.iloc[:rows].to_csv(path, index=False)
    return path


def test_errors_name_the_path_the_columns_and_the_arch(tmp_path, nb201_table):
    with pytest.raises(DataError, match="not found"):
        TabularEvaluator(tmp_path / "missing.csv", metrics=["c10_test_200ep"]).check()
    path = _small_table(tmp_path, nb201_table)
    with pytest.raises(DataError) as info:
        TabularEvaluator(path, metrics={"accuracy": "c10_tset_200ep"}).check()
    assert "c10_tset_200ep" in str(info.value) and "c10_test_200ep" in str(info.value)
    with pytest.raises(DataError, match="not numeric"):
        TabularEvaluator(path, metrics=["unique_str"]).check()
    with pytest.raises(DataError, match="key column 'arch'"):
        TabularEvaluator(path, key="arch", metrics=["c10_test_200ep"]).check()
    absent = nb201_table["arch_str"].iloc[100]
    with pytest.raises(DataError) as info:
        TabularEvaluator(path, metrics=["c10_test_200ep"]).lookup(from_arch_str(absent))
    assert absent in str(info.value) and "arch_str" in str(info.value)


def test_parquet_tables_and_reload_after_a_change(tmp_path, nb201_table):
    path = tmp_path / "small.parquet"
    nb201_table.iloc[:5].to_parquet(path)
    arch = from_arch_str(nb201_table["arch_str"].iloc[3])
    ev = TabularEvaluator(path, metrics={"accuracy": "c10_test_200ep"})
    assert ev.lookup(arch)["accuracy"] == nb201_table["c10_test_200ep"].iloc[3]
    changed = nb201_table.iloc[:5].copy()
    changed["c10_test_200ep"] = 1.0
    changed.to_parquet(path)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    assert ev.lookup(arch)["accuracy"] == 1.0


def test_generic_space_keyed_by_canonical_json(tmp_path):
    space = create_space("synthetic", num_layers=3, num_choices=2)
    archs = list(space.enumerate())
    path = tmp_path / "synthetic.csv"
    pd.DataFrame({"arch": [canonical_json(a) for a in archs],
                  "score": [space.score(a) for a in archs]}).to_csv(path, index=False)
    ev = TabularEvaluator(path, space=space, key="arch", metrics={"accuracy": "score"})
    assert [m["accuracy"] for m in ev.evaluate(archs)] == pytest.approx([space.score(a) for a in archs])
    assert pickle.loads(pickle.dumps(ev)).lookup(archs[2])["accuracy"] == pytest.approx(space.score(archs[2]))


def test_a_batch_loads_the_table_once_and_equals_one_lookup_per_arch(nb201_path, nb201_table, monkeypatch):
    import raynas.evaluators.tabular as tabular

    ev = TabularEvaluator(nb201_path, metrics={"accuracy": "c10valid_valid_12ep"})
    archs = [from_arch_str(s) for s in nb201_table["arch_str"].iloc[:40]]
    one_by_one = [ev.lookup(a) for a in archs]
    loads = []
    real = tabular.load_table
    monkeypatch.setattr(tabular, "load_table", lambda *a, **k: loads.append(a) or real(*a, **k))
    assert ev.evaluate(archs) == one_by_one
    assert len(loads) == 1   # not one stat + path resolution per arch


def test_require_choice_fast_path_agrees_with_same_choice():
    from raynas import ArchError
    from raynas.space import require_choice, same_choice

    class Name(str):
        pass

    allowed = ("conv", 3, 4.0, True, "none")
    for value in ["conv", "none", "3", Name("conv"), 3, 3.0, 4, True, 1, "skip"]:
        expected = next((a for a in allowed if same_choice(a, value)), ArchError)
        try:
            got = require_choice("op", value, allowed, "test")
        except ArchError:
            got = ArchError
        assert got == expected and type(got) is type(expected), value
