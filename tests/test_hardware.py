"""Hardware-aware search: OFA latency lookup tables (read and built), table-backed latency
constraints that fail fast, and latency measured on a pinned Ray actor."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import yaml

import raynas
from raynas import ConfigError, InfeasibleConstraintError, create_space
from raynas.constraints import CostModel, check_constraints_feasible, parse_constraints
from raynas.errors import DataError
from raynas.hardware import LatencyLUT, LatencyTable, build_latency_tables, collect_descriptors
from tests.conftest import shared_data_path

NOTE10_RESOLUTIONS = (160, 176, 192, 208, 224)


@pytest.fixture(scope="module")
def note10_dir():
    return shared_data_path("ofa/note10_latency_lut/224_lookup_table.yaml").parent


@pytest.fixture(scope="module")
def ofa_space():
    # the resolutions OFA's Note10 tables cover
    return create_space("ofa_mbv3", resolutions=list(NOTE10_RESOLUTIONS))


def test_lut_latency_of_an_arch_is_the_sum_of_its_entries(note10_dir, ofa_space):
    lut = LatencyLUT(note10_dir, ofa_space)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = ofa_space.sample(rng)
        raw = yaml.safe_load((note10_dir / f"{arch['resolution']}_lookup_table.yaml").read_text())
        keys = ofa_space.layer_descriptors(arch)
        expected = sum(raw[k]["mean"] for k in keys)
        assert math.isclose(lut(arch)["latency_ms"], expected, rel_tol=1e-12)
        assert [k for k, _ in lut.breakdown(arch)] == keys
        # stem, fixed first block, one block per active layer, head (4 ops)
        assert len(keys) == 2 + sum(s["depth"] for s in arch["stages"]) + 4
    assert lut(ofa_space.smallest())["latency_ms"] < lut(ofa_space.largest())["latency_ms"]


def test_every_ofa_operator_key_resolves_in_the_note10_tables(note10_dir, ofa_space):
    found = collect_descriptors(ofa_space, rng=np.random.default_rng(0), patience=300)
    assert sorted(found) == list(NOTE10_RESOLUTIONS)
    for res, keys in found.items():
        table = LatencyTable.load(note10_dir / f"{res}_lookup_table.yaml")
        # the same operator set: OFA's table holds exactly the operators of this space
        assert set(keys) == set(table.entries), res


def test_lut_names_a_missing_resolution_or_operator(note10_dir, tmp_path):
    full = create_space("ofa_mbv3")    # also has resolutions 128 and 144, which Note10 lacks
    lut = LatencyLUT(note10_dir, full)
    with pytest.raises(DataError, match="no latency table for resolution 128"):
        lut({**full.smallest(), "resolution": 128})
    partial = LatencyTable({"Conv-input:224x224x3-output:112x112x24": LatencyTable.load(
        note10_dir / "224_lookup_table.yaml").entries["Conv-input:224x224x3-output:112x112x24"]})
    partial.save(tmp_path / "224_lookup_table.yaml")
    with pytest.raises(DataError, match="no entry for"):
        LatencyLUT(tmp_path, full)({**full.largest(), "resolution": 224})


def test_infeasible_latency_constraint_fails_fast_with_a_clear_message(note10_dir, ofa_space, tmp_path):
    lut = LatencyLUT(note10_dir, ofa_space)
    fastest = lut(ofa_space.smallest())["latency_ms"]
    start = time.monotonic()
    with pytest.raises(InfeasibleConstraintError) as info:
        raynas.search(ofa_space, lambda arch: {"accuracy": 0.0}, num_samples=10,
                      constraints=f"latency_ms<={fastest * 0.9:.3f}", cost_functions=[lut],
                      storage_path=tmp_path, progress=False)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "latency_ms <=" in message and f"latency_ms reaches {fastest:.4g} at best" in message
    # a feasible limit passes the same check
    check_constraints_feasible(ofa_space, CostModel(ofa_space, [lut]),
                               parse_constraints(f"latency_ms<={fastest * 1.5}"), np.random.default_rng(0))


def test_built_latency_table_has_ofa_format_and_prices_archs(tmp_path):
    space = create_space("ofa_mbv3_cifar", resolutions=[32])
    written = build_latency_tables(space, tmp_path, device="cpu", warmup=1, repeats=3, budget_seconds=120)
    assert list(written) == [32] and written[32].name == "32_lookup_table.yaml"
    raw = yaml.safe_load(written[32].read_text())
    assert all(set(v) == {"count", "mean", "std"} and v["count"] == 3 and v["mean"] > 0 for v in raw.values())
    lut = LatencyLUT(tmp_path, space)
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = space.sample(rng)
        assert math.isclose(lut(arch)["latency_ms"], sum(raw[k]["mean"] for k in space.layer_descriptors(arch)))
    # the table covers the space: every operator of every arch resolves
    assert set(collect_descriptors(space, rng=np.random.default_rng(2), patience=100)[32]) == set(raw)


def test_measured_latency_needs_a_device_some_node_offers(ray_session):
    from raynas.hardware import MeasuredLatencyEvaluator

    space = create_space("ofa_mbv3_cifar", resolutions=[32])
    with pytest.raises(ConfigError, match="no node of this Ray cluster offers the resource 'pixel3'"):
        MeasuredLatencyEvaluator(space, resource="pixel3")
    evaluator = MeasuredLatencyEvaluator(space, repeats=3, warmup=1)
    try:
        small, large = evaluator.evaluate([space.smallest(), space.largest()])
        assert 0 < small["latency_ms"] and 0 < large["latency_ms"]
        assert evaluator.where()["node_id"] == ray_session.get_runtime_context().get_node_id()
    finally:
        evaluator.close()
