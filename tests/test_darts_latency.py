"""The expected-latency loss of differentiable search: the α gradient is the CE gradient plus
λ·∂E[latency]/∂α (both orders), a huge λ drives a slow op's α down everywhere, λ = 0 is plain
DARTS bit for bit, bad tables fail with a clear ConfigError, and λ sweeps run through Tune."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raynas import ConfigError, create_space
from raynas.differentiable.architect import Architect
from raynas.differentiable.config import DartsSearchConfig
from raynas.differentiable.latency import (build_supernet_latency_table, check_table_matches, latency_penalty,
                                           resolve_latency_table)
from raynas.differentiable.search import DartsSearch
from raynas.hardware.expected_latency import OperatorLatencyTable
from spaces.darts import DARTS_V1, EDGES as DARTS_EDGES, PRIMITIVES
from spaces.nb201 import OP_NAMES

SLOW = OP_NAMES.index("nor_conv_3x3")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _supernet(seed=0):
    torch.manual_seed(seed)
    net = create_space("nb201").build_search_network(channels=2, cells_per_stage=1)
    net.init_alphas(torch.Generator().manual_seed(seed), scale=0.5)
    return net.double()


def _batch(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, 8, 8, generator=gen, dtype=torch.float64),
            torch.randint(0, 10, (n,), generator=gen))


def _table(seed=0, slow=None):
    lut = np.random.default_rng(seed).uniform(0.1, 2.0, (6, 5))
    if slow is not None:
        lut[:, :] = 0.1
        lut[:, slow] = 100.0
    return OperatorLatencyTable({"cell": lut}, {"cell": OP_NAMES}, fixed_ms=3.0, device="test")


def _alpha_gradient(net, table, lam, order, temperature=0.8):
    net.temperature = temperature
    weight_opt = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    arch_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-3)
    penalty = latency_penalty(net, table, lam) if table is not None else None
    architect = Architect(net, arch_opt, order, penalty=penalty)
    grads, loss, _ = architect.gradient(_batch(seed=1), _batch(seed=2), weight_opt)
    return grads[0], loss


@pytest.mark.parametrize("order", [1, 2])
def test_alpha_gradient_is_ce_gradient_plus_lambda_times_latency_gradient(order):
    net, table, lam = _supernet(), _table(), 0.37
    ce_grad, ce_loss = _alpha_gradient(net, None, 0.0, order)
    grad, loss = _alpha_gradient(net, table, lam, order)
    # ∂E[latency]/∂α of the table formula, written out independently: Σ softmax(α/T) · LUT
    alpha = net.alphas["cell"].detach().clone().requires_grad_()
    lut = torch.as_tensor(table.tables["cell"])
    (lat_grad,) = torch.autograd.grad((torch.softmax(alpha / 0.8, dim=-1) * lut).sum(), alpha)
    torch.testing.assert_close(grad, ce_grad + lam * lat_grad, rtol=1e-10, atol=1e-12)
    assert loss.item() == ce_loss.item()  # the reported loss stays the validation CE
    # and the latency part against central finite differences of the softmax formula
    eps = 1e-6
    for idx in [(0, 0), (2, SLOW), (5, 4)]:
        plus, minus = alpha.detach().clone(), alpha.detach().clone()
        plus[idx] += eps
        minus[idx] -= eps
        numeric = ((torch.softmax(plus / 0.8, -1) - torch.softmax(minus / 0.8, -1)) * lut).sum() / (2 * eps)
        assert float(lat_grad[idx]) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)


def test_huge_lambda_drives_the_slow_op_down_on_every_edge():
    net, table = _supernet(), _table(slow=SLOW)
    before = net.alphas["cell"].detach().clone()
    arch_opt = torch.optim.Adam(net.arch_parameters(), lr=0.5)
    architect = Architect(net, arch_opt, 1, penalty=latency_penalty(net, table, 1e3))
    for step in range(5):
        architect.step(_batch(seed=10 + step), _batch(seed=20 + step))
    after = net.alphas["cell"].detach()
    assert (after[:, SLOW] < before[:, SLOW] - 1.0).all()  # Adam: up to lr per step
    assert (after.argmin(dim=1) == SLOW).all()
    choices = table.argmax_choices(net.mixing_weights())["cell"]
    assert SLOW not in choices and table.latency({"cell": choices}) < 3.0 + 6 * 0.1 + 1e-9


def _search_config(tmp_path, **overrides):
    base = {"space": "nb201", "supernet_options": {"channels": 2, "cells_per_stage": 1}, "data": "digits",
            "half_size": 64, "batch_size": 16, "epochs": 2, "max_steps_per_epoch": 2, "device": "cpu",
            "cpu_threads": 1, "arch_lr": 0.05}
    return DartsSearchConfig.from_any({**base, **overrides})


def test_lambda_zero_reproduces_plain_darts_and_records_latency(tmp_path):
    path = _table(seed=3).save(tmp_path / "lut.json")
    plain = DartsSearch(_search_config(tmp_path))
    plain.fit()
    zero = DartsSearch(_search_config(tmp_path, latency_table=str(path), latency_lambda=0.0))
    zero.fit()
    for a, b in zip(plain.model.arch_parameters(), zero.model.arch_parameters()):
        assert torch.equal(a, b)
    for a, b in zip(plain.model.weight_parameters(), zero.model.weight_parameters()):
        assert torch.equal(a, b)
    assert "expected_latency_ms" not in plain.history[-1]
    table = OperatorLatencyTable.load(path)
    for record, other in zip(zero.history, plain.history):
        assert record["arch_str"] == other["arch_str"] and record["val_loss"] == other["val_loss"]
        assert record["derived_latency_ms"] == pytest.approx(table.latency({"cell": record["arch"]["edges"]}))
    weights = {g: w.detach().double() for g, w in zero.model.mixing_weights().items()}
    assert zero.history[-1]["expected_latency_ms"] == pytest.approx(float((weights["cell"].numpy() * table.tables["cell"]).sum() + 3.0))
    assert zero.result()["latency_table"]["groups"]["cell"]["ops"] == list(OP_NAMES)

    slow = _table(slow=SLOW).save(tmp_path / "slow.json")
    heavy = DartsSearch(_search_config(tmp_path, latency_table=str(slow), latency_lambda=10.0))
    heavy.fit()
    assert not torch.equal(heavy.model.alphas["cell"], plain.model.alphas["cell"])
    assert SLOW not in [OP_NAMES.index(op) for op in heavy.history[-1]["arch"]["edges"]]
    assert heavy.history[-1]["expected_latency_ms"] < heavy.history[0]["expected_latency_ms"]


def test_measured_table_fits_the_configured_supernet(tmp_path):
    net = _supernet().float()
    table = build_supernet_latency_table(net, warmup=1, repeats=2)
    assert table.tables["cell"].shape == (6, 5) and (table.tables["cell"] >= 0).all()
    # every edge of this cell sees the same shapes: each op is timed once and shared by all edges
    cell = table.tables["cell"]
    assert (cell == cell[0]).all()
    # a convolution costs far more than an identity (not 3x3 vs 1x1: too close to order reliably)
    ops = list(table.op_names["cell"])
    assert cell[0, ops.index("nor_conv_3x3")] > 3 * cell[0, ops.index("skip_connect")]
    check_table_matches(table, net)
    search = DartsSearch(_search_config(tmp_path, latency_table="measure", latency_lambda=0.5, epochs=1))
    assert search.latency_table.tables["cell"].shape == (6, 5)
    assert search.run_epoch()["latency_lambda"] == 0.5


def test_bad_tables_and_options_fail_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*measure"):
        _search_config(tmp_path, latency_table=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="needs 'latency_table'"):
        _search_config(tmp_path, latency_lambda=1.0)
    with pytest.raises(ConfigError, match="latency_lambda"):
        _search_config(tmp_path, latency_table="measure", latency_lambda=-1.0)
    net = _supernet()
    wrong_ops = OperatorLatencyTable({"cell": np.ones((6, 5))}, {"cell": OP_NAMES[::-1]})
    with pytest.raises(ConfigError, match=r"group 'cell' has ops .*in this order.*rebuild.*measure"):
        check_table_matches(wrong_ops, net)
    wrong_edges = OperatorLatencyTable({"cell": np.ones((4, 5))}, {"cell": OP_NAMES})
    with pytest.raises(ConfigError, match="has 4 edges in the table, 6 in the supernet"):
        check_table_matches(wrong_edges, net)
    darts_table = OperatorLatencyTable({g: np.ones((14, 8)) for g in ("normal", "reduce")},
                                       {g: PRIMITIVES for g in ("normal", "reduce")})
    path = darts_table.save(tmp_path / "darts.json")
    with pytest.raises(ConfigError, match=r"groups \['normal', 'reduce'\] in the table, \['cell'\]"):
        resolve_latency_table(str(path), net)
    with pytest.raises(ConfigError, match="does not match"):
        DartsSearch(_search_config(tmp_path, latency_table=str(path), epochs=1))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot use latency table.*rebuild"):
        resolve_latency_table(str(tmp_path / "junk.json"), net)


def test_darts_genotype_maps_to_table_rows():
    net = create_space("darts").build_search_network(channels=4, layers=3)
    choices = net.latency_choices(DARTS_V1)
    for cell in ("normal", "reduce"):
        kept = [(e, op) for e, op in enumerate(choices[cell]) if op != "none"]
        assert len(kept) == 8
        assert sorted(kept) == sorted((DARTS_EDGES.index((k // 2 + 2, src)), op)
                                      for k, (op, src) in enumerate(DARTS_V1[cell]))


def test_cli_comma_list_of_lambdas_is_a_sweep(monkeypatch):
    import raynas.differentiable.sweep as sweep
    from raynas.cli.main import main

    seen = {}

    def fake(config, grid=None, **kwargs):
        seen.update(grid=grid, kwargs=kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(sweep, "darts_search", fake)
    with pytest.raises(SystemExit):
        main(["darts", "--latency-table", "measure", "--latency-lambda", "0,0.1,1", "--quiet"])
    assert seen["grid"] == {"latency_lambda": [0.0, 0.1, 1.0]} and seen["kwargs"]["latency_table"] == "measure"
    with pytest.raises(SystemExit):
        main(["darts", "--latency-table", "t.json", "--latency-lambda", "0.5", "--quiet"])
    assert seen["grid"] == {} and seen["kwargs"]["latency_lambda"] == 0.5


def test_lambda_sweep_runs_one_tune_trial_per_lambda(ray_session, tmp_path):
    from raynas.differentiable.sweep import darts_search

    path = _table(slow=SLOW).save(tmp_path / "slow.json")
    result = darts_search(
        {"space": "nb201", "supernet_options": {"channels": 2, "cells_per_stage": 1}, "data": "digits",
         "half_size": 64, "batch_size": 16, "epochs": 2, "max_steps_per_epoch": 2, "device": "cpu",
         "cpu_threads": 1, "arch_lr": 0.05, "latency_table": str(path)},
        grid={"latency_lambda": [0.0, 10.0]}, storage_path=tmp_path, name="lam", progress=False)
    assert len(result.trials) == 2 and not any(t["error"] for t in result.trials)
    by_lambda = {t["config"]["latency_lambda"]: t["history"] for t in result.trials}
    assert sorted(by_lambda) == [0.0, 10.0]
    for lam, history in by_lambda.items():
        assert [r["epoch"] for r in history] == [1, 2] and all(r["latency_lambda"] == lam for r in history)
    assert by_lambda[10.0][-1]["expected_latency_ms"] < by_lambda[0.0][-1]["expected_latency_ms"]
    assert "nor_conv_3x3" not in json.loads(by_lambda[10.0][-1]["arch"])["edges"]


def test_sweep_resolves_table_paths_but_not_measure(tmp_path, monkeypatch):
    from raynas.differentiable.sweep import absolute_paths

    monkeypatch.chdir(tmp_path)
    assert absolute_paths({"latency_table": "lut.json"}) == {"latency_table": str(tmp_path / "lut.json")}
    assert absolute_paths({"latency_table": "measure"}) == {"latency_table": "measure"}
    assert absolute_paths({"latency_table": None}) == {"latency_table": None}
