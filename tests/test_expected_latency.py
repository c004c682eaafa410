"""Expected latency of mixtures: equals the table latency of the argmax arch when one-hot, its
α gradient matches finite differences, tables build from timed ops and round-trip as JSON."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raynas import CheckpointError, ConfigError, create_space
from raynas.hardware.expected_latency import (HYBRID_GROUP, OperatorLatencyTable, OpInstance,
                                              build_latency_table, hybrid_mixing_weights,
                                              hybrid_op_instances, latency_loss)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    return OperatorLatencyTable({"cell": rng.uniform(0.0, 3.0, (6, 5)), "reduce": rng.uniform(0.5, 2.0, (4, 3))},
                                {"cell": OPS, "reduce": ("a", "b", "c")}, fixed_ms=1.25, device="test")


def test_one_hot_mixture_equals_the_argmax_arch_latency(table):
    rng = np.random.default_rng(1)
    for _ in range(20):
        choices = {"cell": rng.integers(0, 5, 6).tolist(), "reduce": rng.integers(0, 3, 4).tolist()}
        weights = {g: torch.nn.functional.one_hot(torch.tensor(c), table.tables[g].shape[1]).double()
                   for g, c in choices.items()}
        expected = table.expected(weights)
        by_hand = 1.25 + sum(table.tables[g][e, k] for g, c in choices.items() for e, k in enumerate(c))
        assert expected.item() == pytest.approx(table.latency(choices), abs=1e-12)
        assert table.latency(choices) == pytest.approx(by_hand, abs=1e-12)
        assert table.argmax_choices(weights) == choices
    names = {"cell": [OPS[i] for i in choices["cell"]], "reduce": choices["reduce"]}
    assert table.latency(names) == table.latency(choices)  # ops by name or by index


def test_expected_latency_gradient_matches_finite_differences(table):
    gen = torch.Generator().manual_seed(0)
    alphas = {g: torch.randn(t.shape, generator=gen, dtype=torch.float64).requires_grad_()
              for g, t in table.tables.items()}
    temperature = 0.7

    def f(a):
        return table.expected({g: torch.softmax(v / temperature, dim=-1) for g, v in a.items()})

    grads = torch.autograd.grad(f(alphas), list(alphas.values()))
    eps = 1e-6
    for (g, a), grad in zip(alphas.items(), grads):
        numeric = torch.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            plus = {k: v.detach().clone() for k, v in alphas.items()}
            minus = {k: v.detach().clone() for k, v in alphas.items()}
            plus[g][idx] += eps
            minus[g][idx] -= eps
            numeric[idx] = (f(plus) - f(minus)) / (2 * eps)
        torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-8)
    # softmax sums to one per edge: shifting a row of α changes nothing
    assert all(abs(float(gr.sum(dim=1).abs().max())) < 1e-12 for gr in grads)


def test_latency_loss_adds_lambda_times_expected_latency(table):
    weights = {g: torch.full(t.shape, 1.0 / t.shape[1], dtype=torch.float64) for g, t in table.tables.items()}
    mean = 1.25 + sum(t.mean(axis=1).sum() for t in table.tables.values())
    ce = torch.tensor(2.0, dtype=torch.float64)
    assert latency_loss(ce, weights, table, 0.1).item() == pytest.approx(2.0 + 0.1 * mean)
    assert table.expected({g: w.numpy() for g, w in weights.items()}) == pytest.approx(mean)
    with pytest.raises(ConfigError, match="λ"):
        latency_loss(ce, weights, table, -1.0)
    with pytest.raises(ConfigError, match="shape"):
        table.expected({"cell": torch.zeros(6, 4), "reduce": weights["reduce"]})


def test_tables_sum_shared_edges_and_time_each_signature_once():
    calls = []

    def timer(module, shape):
        calls.append(shape)
        return float(shape[1]) / 10  # "latency" = channels / 10

    instances = [OpInstance("cell", e, op, None, (1, c, 8, 8), (op, c))
                 for c in (4, 8) for e in range(2) for op in ("x", "y")]
    table = build_latency_table(instances, {"cell": ("x", "y")}, {"cell": 2}, timer, fixed_ms=0.5)
    np.testing.assert_allclose(table.tables["cell"], np.full((2, 2), 0.4 + 0.8))  # two cells share α
    assert len(calls) == 4 and table.info["instances"] == 8 and table.fixed_ms == 0.5


def test_table_json_round_trip(table, tmp_path):
    path = table.save(tmp_path / "lut.json")
    loaded = OperatorLatencyTable.load(path)
    assert loaded.device == "test" and loaded.fixed_ms == table.fixed_ms
    for g in table.tables:
        np.testing.assert_array_equal(loaded.tables[g], table.tables[g])
        assert loaded.op_names[g] == table.op_names[g]
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not an operator latency table"):
        OperatorLatencyTable.load(tmp_path / "bad.json")


def test_hybrid_alpha_expected_latency():
    space = create_space("hybrid_cifar", channels=16, num_layers=3, num_heads=[1, 2], head_dim=8)
    supernet = space.build_supernet(mode="weighted")
    instances, op_names, edges = hybrid_op_instances(supernet, batch_size=2)
    assert op_names == {HYBRID_GROUP: ("conv", "attention")} and edges == {HYBRID_GROUP: 3}
    assert all(i.input_shape == (2, 16, space.feature_size, space.feature_size) for i in instances)
    times = {"conv": 1.0, "attention": 3.0}
    table = build_latency_table(instances, op_names, edges,
                                lambda m, s: times["conv" if m in [l.conv for l in supernet.layers] else "attention"])
    with torch.no_grad():
        for p, logit in zip(supernet.alpha_parameters(), (4.0, -4.0, 0.0)):
            p.fill_(logit)
    weights = hybrid_mixing_weights(supernet)
    alpha = torch.sigmoid(torch.tensor([4.0, -4.0, 0.0]))
    assert table.expected(weights).item() == pytest.approx(float((alpha * 1.0 + (1 - alpha) * 3.0).sum()), rel=1e-6)
    # the latency gradient pushes α (P(convolution)) up: the convolution is the faster op here
    grads = torch.autograd.grad(table.expected(weights), supernet.alpha_parameters())
    assert all(float(g) < 0 for g in grads)
    # the derived arch's table latency is the one-hot value
    assert table.latency({HYBRID_GROUP: ["conv", "attention", "attention"]}) == pytest.approx(7.0)
