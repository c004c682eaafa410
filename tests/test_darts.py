"""Differentiable search: mixed ops, temperature, the second-order architect, schedules,
derivation in both spaces, the DARTS space and its networks, and a tiny search through Tune."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from raynas import ArchError, ConfigError, arch_id, create_space
from raynas.differentiable.architect import Architect
from raynas.differentiable.config import DartsSearchConfig
from raynas.differentiable.mixed import DifferentiableSupernet, MixedOp
from raynas.differentiable.temperature import list_schedules, make_schedule
from spaces.darts import DARTS_V1, DARTS_V2, EDGES as DARTS_EDGES, PRIMITIVES, derive_genotype
from spaces.nb201 import OP_NAMES, from_arch_str, to_arch_str
from spaces.nb201_net import NB201Network
from conftest import shared_data_path

TABLE = "nb201/nb201_cifar10.csv"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _nb201_supernet(channels=2, cells=1, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    net = create_space("nb201").build_search_network(channels=channels, cells_per_stage=cells)
    net.init_alphas(torch.Generator().manual_seed(seed), scale=0.5)
    return net.to(dtype)


def _images(n, size=8, seed=0, dtype=torch.float64):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------ mixed operations
@pytest.mark.parametrize("space, edge", [("nb201", 0), ("darts", 1)])
def test_mixed_op_equals_the_weighted_sum_of_its_ops(space, edge):
    torch.manual_seed(0)
    if space == "nb201":
        net = create_space("nb201").build_search_network(channels=4, cells_per_stage=1).double()
        x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    else:  # an edge of a reduction cell: stride 2, pools followed by affine-free BN
        net = create_space("darts").build_search_network(channels=4, layers=3).double()
        x = torch.randn(3, 8, 8, 8, dtype=torch.float64)
    mixed = [m for m in net.mixed_ops() if m.edge == edge and (space == "nb201" or m.group == "reduce")][0]
    assert isinstance(mixed, MixedOp) and mixed.op_names == (OP_NAMES if space == "nb201" else PRIMITIVES)
    w = torch.softmax(torch.randn(len(mixed.op_names), dtype=torch.float64), 0)
    mixed.train()
    expected = sum(w[k] * mixed.ops[name](x) for k, name in enumerate(mixed.op_names))  # 'none' included
    torch.testing.assert_close(mixed(x, w), expected, rtol=1e-12, atol=1e-12)
    # the weights' gradient is each op's output projected on the upstream gradient
    w = w.clone().requires_grad_(True)
    upstream = torch.randn_like(expected)
    (mixed(x, w) * upstream).sum().backward()
    with torch.no_grad():
        for k, name in enumerate(mixed.op_names):
            assert float(w.grad[k]) == pytest.approx(float((mixed.ops[name](x) * upstream).sum()), abs=1e-9)


def test_mixed_op_skips_a_none_between_other_ops():
    """'none' in the middle: the running ops' weights are gathered by index, not sliced."""
    torch.manual_seed(0)
    ops = {"conv": torch.nn.Conv2d(2, 2, 3, padding=1).double(), "none": torch.nn.Identity(),
           "pool": torch.nn.AvgPool2d(3, 1, 1)}
    mixed = MixedOp(ops, group="cell", edge=0, C_in=2, C_out=2, stride=1)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(mixed(x, w), 0.5 * ops["conv"](x) + 0.2 * ops["pool"](x))
    mixed(x, w).sum().backward()
    assert float(w.grad[1]) == 0.0 and float(w.grad[2]) == pytest.approx(float(ops["pool"](x).sum()))
    with pytest.raises(ConfigError, match="not 'none'"):
        MixedOp({"none": torch.nn.Identity()}, group="cell", edge=0, C_in=2, C_out=2, stride=1)


def test_low_temperature_makes_the_mixture_the_argmax_op():
    net = _nb201_supernet(channels=4)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    mixed = next(net.mixed_ops())
    alpha = torch.tensor([0.3, -0.2, 0.1, 0.45, 0.0], dtype=torch.float64)  # argmax: nor_conv_3x3
    mixed.train()
    for t, close in ((1.0, False), (1e-4, True)):
        w = torch.softmax(alpha / t, 0)
        out, argmax_op = mixed(x, w), mixed.ops["nor_conv_3x3"](x)
        assert torch.allclose(out, argmax_op, rtol=0, atol=1e-12) is close


def test_low_temperature_supernet_computes_its_derived_network():
    """At T -> 0 the whole supernet is the static NB201 network of its argmax cell (same weights)."""
    net = _nb201_supernet(channels=4, seed=1)
    with torch.no_grad():
        net.alphas["cell"].copy_(torch.tensor([[0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0],
                                               [0, 0, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]],
                                              dtype=torch.float64))
    net.temperature = 1e-4
    arch = net.derive()
    assert to_arch_str(arch) == ("|nor_conv_3x3~0|+|skip_connect~0|none~1|"
                                 "+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    static = NB201Network(arch["edges"], channels=4, cells_per_stage=1).double()
    state = net.state_dict()
    mapped = {}
    for key in static.state_dict():
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "ops":  # cells.c.ops.e.* -> cells.c.edges.e.ops.<op>.*
            e = int(parts[3])
            key_super = ".".join(["cells", parts[1], "edges", parts[3], "ops", arch["edges"][e]] + parts[4:])
        else:
            key_super = key
        if key_super in state:
            mapped[key] = state[key_super]
    missing = static.load_state_dict(mapped, strict=False).missing_keys
    # only the static cells' BN affine parameters (1 and 0: affine-free at init) and running
    # statistics (unused in training mode) have no counterpart in the supernet
    bn_state = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert missing and all(k.split(".")[-1] in bn_state and ".ops." in k for k in missing)
    net.train(), static.train()
    x = _images(4, seed=3)
    torch.testing.assert_close(net(x), static(x), rtol=1e-10, atol=1e-10)


def test_mixing_weights_read_out_per_edge_and_op():
    net = create_space("darts").build_search_network(channels=4, layers=5)
    net.temperature = 0.5
    weights = net.mixing_weights()
    assert set(weights) == {"normal", "reduce"} and weights["normal"].shape == (14, 8)
    edges = net.edge_weights()
    assert len(edges) == 28 and edges[3].name == "3<-1" and tuple(edges[3].weights) == PRIMITIVES
    with torch.no_grad():
        for e in edges:
            assert float(sum(e.weights.values())) == pytest.approx(1.0)
            assert float(e.weights["sep_conv_3x3"]) == pytest.approx(float(weights[e.group][e.edge, 4]))
    assert edges[0].weights["none"].requires_grad  # differentiable: a latency term can backpropagate
    ops = list(net.mixed_ops())
    assert len(ops) == 5 * 14 and {(m.group, m.stride) for m in ops} == {("normal", 1), ("reduce", 1), ("reduce", 2)}
    reduce0 = [m for m in ops if m.group == "reduce" and m.edge == 0][0]
    assert (reduce0.C_in, reduce0.stride, reduce0.resolution) == (8, 2, 32)  # first reduction cell
    assert {id(p) for p in net.arch_parameters()}.isdisjoint({id(p) for p in net.weight_parameters()})
    with pytest.raises(ConfigError, match="positive"):
        net.temperature = 0.0


# ------------------------------------------------------------------ architect
class _Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


class _SmoothSupernet(DifferentiableSupernet):
    """Three mixed edges over smooth ops on vectors. A ReLU network's α gradient jumps where a
    pre-activation changes sign, which a perturbation of norm 0.01 does cross in a network this
    small; without kinks the finite difference at DARTS' ε is accurate to O(ε²)."""

    def __init__(self, dim: int = 5, classes: int = 3) -> None:
        super().__init__(space=None)
        torch.manual_seed(0)
        names = ("none", "skip_connect", "tanh", "linear")

        def ops():
            return {"none": _Zero(), "skip_connect": torch.nn.Identity(),
                    "tanh": torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.Tanh()),
                    "linear": torch.nn.Linear(dim, dim)}

        self.stem = torch.nn.Sequential(torch.nn.Linear(4, dim), torch.nn.Tanh())
        self.edges = torch.nn.ModuleList(MixedOp(ops(), group="cell", edge=e, C_in=dim, C_out=dim, stride=1)
                                         for e in range(3))
        self.head = torch.nn.Linear(dim, classes)
        self._add_alpha("cell", ["1<-0", "2<-1", "2<-0"], names)

    def forward(self, x):
        w = self.mixing_weights()["cell"]
        x0 = self.stem(x)
        x1 = self.edges[0](x0, w[0])
        return self.head(self.edges[1](x1, w[1]) + self.edges[2](x0, w[2]))


def _unrolled_val_loss(net, sgd, lr, train, val):
    """f(α) = L_val(w', α) with w' = w - ξ(μ·buf + ∇_w L_train(w, α) + λw), computed on its own."""
    params = net.weight_parameters()
    backup = [p.detach().clone() for p in params]

    def f() -> float:
        grads = torch.autograd.grad(F.cross_entropy(net(train[0]), train[1]), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * (0.9 * sgd.state[p]["momentum_buffer"] + g + 3e-4 * p))
            value = float(F.cross_entropy(net(val[0]), val[1]))
            for p, b in zip(params, backup):
                p.copy_(b)
        return value

    return f


def _numeric_alpha_gradient(net, f, h=1e-5):
    alpha = net.arch_parameters()[0]
    a0 = alpha.detach().clone()
    out = torch.zeros_like(a0)
    for idx in np.ndindex(*a0.shape):
        for sign in (1, -1):
            with torch.no_grad():
                alpha.copy_(a0)
                alpha[idx] += sign * h
            out[idx] += sign * f() / (2 * h)
    with torch.no_grad():
        alpha.copy_(a0)
    return out


def _check_second_order(net, train, val, lr, fd_scale, tolerance):
    sgd = torch.optim.SGD(net.weight_parameters(), lr=lr, momentum=0.9, weight_decay=3e-4)
    F.cross_entropy(net(val[0]), train[1]).backward()
    sgd.step()  # leaves a momentum buffer for the unrolled step to use
    sgd.zero_grad(set_to_none=True)
    adam = torch.optim.Adam(net.arch_parameters(), lr=3e-4)
    backup = [p.detach().clone() for p in net.weight_parameters()]
    second = Architect(net, adam, order=2, fd_scale=fd_scale).gradient(train, val, sgd)[0][0]
    for p, b in zip(net.weight_parameters(), backup):  # the architect restored what it perturbed
        assert torch.equal(p.detach(), b)
    first = Architect(net, adam, order=1).gradient(train, val, sgd)[0][0]
    numeric = _numeric_alpha_gradient(net, _unrolled_val_loss(net, sgd, lr, train, val))
    scale = float(numeric.abs().max())
    assert float((second - numeric).abs().max()) < tolerance * scale
    # the check has teeth: without the implicit term the gradient is far off
    assert float((first - numeric).abs().max()) > 0.1 * scale


def test_second_order_gradient_matches_finite_differences():
    """At DARTS' ε = 0.01/‖v‖, on a tiny smooth supernet."""
    net = _SmoothSupernet().double()
    net.init_alphas(torch.Generator().manual_seed(1), scale=0.5)
    g = torch.Generator().manual_seed(2)
    train = (torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
    val = (torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
    _check_second_order(net, train, val, lr=1.0, fd_scale=0.01, tolerance=1e-4)


def test_second_order_gradient_on_the_nb201_supernet():
    """The same check on the real cell (ReLU, BN on batch statistics) with a smaller ε, below the
    scale where this tiny network's ReLUs flip."""
    net = _nb201_supernet(channels=2, seed=2)
    net.train()
    train = (_images(4, seed=5), torch.tensor([1, 0, 3, 2]))
    val = (_images(4, seed=6), torch.tensor([2, 3, 0, 1]))
    _check_second_order(net, train, val, lr=0.5, fd_scale=1e-4, tolerance=2e-3)


def test_first_order_gradient_is_the_validation_gradient_and_step_moves_only_alpha():
    net = _nb201_supernet(channels=2, seed=4)
    net.train()
    val = (_images(4, seed=7), torch.tensor([0, 1, 2, 3]))
    expected = torch.autograd.grad(F.cross_entropy(net(val[0]), val[1]), net.alphas["cell"])[0]
    adam = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    architect = Architect(net, adam, order=1)
    torch.testing.assert_close(architect.gradient(None, val)[0][0], expected)
    weights = [p.detach().clone() for p in net.weight_parameters()]
    before = net.alphas["cell"].detach().clone()
    architect.step(None, val)
    assert not torch.equal(before, net.alphas["cell"].detach())
    assert all(torch.equal(a, p.detach()) for a, p in zip(weights, net.weight_parameters()))
    with pytest.raises(ConfigError, match="SGD"):
        Architect(net, adam, order=2).gradient(val, val, torch.optim.Adam(net.weight_parameters()))
    with pytest.raises(ConfigError, match="own optimizer"):
        Architect(net, torch.optim.Adam(net.parameters()), order=1)


# ------------------------------------------------------------------ schedules
def test_schedules_give_t0_first_and_t_end_last():
    linear = make_schedule("linear")  # TD-DARTS defaults
    assert linear.at(0, 50) == 10.0 and linear.at(49, 50) == pytest.approx(0.1)
    assert linear.at(1, 50) == pytest.approx(10 - 9.9 / 49)  # the founding document's ~9.8
    assert [linear.at(e, 3) for e in range(3)] == pytest.approx([10.0, 5.05, 0.1])
    expo = make_schedule({"name": "exponential", "t0": 8.0, "t_end": 0.5})
    values = [expo.at(e, 5) for e in range(5)]
    assert values[0] == 8.0 and values[-1] == pytest.approx(0.5)
    assert np.allclose(np.diff(np.log(values)), math.log(0.5 / 8.0) / 4)
    assert make_schedule("constant").at(7, 10) == 1.0 and make_schedule("constant", t=2).at(0, 1) == 2.0
    assert make_schedule("linear").at(0, 1) == 10.0  # a single epoch cannot decay
    floored = make_schedule("linear", t_floor=1.0)  # a variant: the same line, clamped at 1
    assert [floored.at(e, 16) for e in range(16)] == pytest.approx([max(linear.at(e, 16), 1.0) for e in range(16)])
    assert floored.at(15, 16) == 1.0 and make_schedule(floored.spec()) == floored
    assert DartsSearchConfig(schedule=floored.spec()).method == "td-darts1-floor1"
    assert make_schedule(linear.spec()).spec() == {"name": "linear", "t0": 10.0, "t_end": 0.1}
    assert set(list_schedules()) >= {"constant", "linear", "exponential"}
    for bad, match in ((lambda: make_schedule("cosine"), "unknown"), (lambda: make_schedule("linear", t0=-1), "positive"),
                       (lambda: linear.at(50, 50), "epoch"), (lambda: make_schedule("linear", tau=1), "bad options")):
        with pytest.raises(ConfigError, match=match):
            bad()


# ------------------------------------------------------------------ derivation
def _darts_alpha():
    """Hand-set α (rows in DARTS edge order): the expected genotype is written next to it."""
    a = np.zeros((14, 8))
    col = {name: k for k, name in enumerate(PRIMITIVES)}
    # node 2 (edges 0, 1): both kept; edge 0's strongest is 'none', ignored -> its best real op
    a[0, col["none"]], a[0, col["sep_conv_3x3"]] = 5.0, 1.0
    a[1, col["skip_connect"]] = 2.0
    # node 3 (edges 2, 3, 4 from nodes 0, 1, 2): T-dependent ranking (see the test)
    a[2, col["dil_conv_3x3"]] = 2.0                                  # strong, clear winner
    a[3, col["sep_conv_5x5"]], a[3, col["max_pool_3x3"]] = 1.5, 1.5   # two-way tie: 0.30 at T=1
    a[4, col["avg_pool_3x3"]] = 1.0                                   # 0.28 at T=1, ~1 at T=0.1
    # node 4 (edges 5..8 from nodes 0..3): inputs 3 and 1
    a[8, col["dil_conv_5x5"]], a[6, col["sep_conv_3x3"]], a[5, col["skip_connect"]] = 3.0, 2.5, 0.5
    # node 5 (edges 9..13 from nodes 0..4): all 'none' dominated; inputs 4 and 0
    a[9:14, col["none"]] = 9.0
    a[13, col["max_pool_3x3"]], a[9, col["avg_pool_3x3"]] = 1.2, 1.1
    return a


def test_darts_derivation_on_hand_set_alpha_and_its_temperature():
    space = create_space("darts")
    net = space.build_search_network(channels=2, layers=3)
    with torch.no_grad():
        net.alphas["normal"].copy_(torch.from_numpy(_darts_alpha()))
        net.alphas["reduce"].copy_(torch.from_numpy(_darts_alpha()[:, ::-1].copy()))
    expected_t1 = [["sep_conv_3x3", 0], ["skip_connect", 1], ["dil_conv_3x3", 0], ["max_pool_3x3", 1],
                   ["sep_conv_3x3", 1], ["dil_conv_5x5", 3], ["avg_pool_3x3", 0], ["max_pool_3x3", 4]]
    net.temperature = 1.0
    assert net.derive()["normal"] == expected_t1
    # at T = 0.1 edge 2->3 (one clear op) outranks edge 1->3 (two tied ops): ranking uses softmax(α/T)
    net.temperature = 0.1
    expected_t01 = expected_t1[:2] + [["dil_conv_3x3", 0], ["avg_pool_3x3", 2]] + expected_t1[4:]
    assert net.derive()["normal"] == expected_t01            # derive() uses the current temperature
    assert net.derive(temperature=1.0)["normal"] == expected_t1  # unless told otherwise
    assert space.validate(net.derive()) == net.derive()
    # the same rule as a pure function, and DARTS' published genotypes are valid archs
    assert derive_genotype({"normal": _darts_alpha(), "reduce": _darts_alpha()})["normal"] == expected_t1
    assert arch_id(space.validate(DARTS_V2)) != arch_id(space.validate(DARTS_V1))


def test_nb201_derivation_is_argmax_at_every_temperature():
    net = create_space("nb201").build_search_network(channels=2, cells_per_stage=1)
    alpha = torch.tensor([[0.1, 0.0, 0.3, 0.2, 0.0],     # nor_conv_1x1
                          [0.9, 0.1, 0.0, 0.0, 0.2],     # none (NB201 keeps 'none' in its argmax)
                          [0.0, 0.5, 0.1, 0.2, 0.0],     # skip_connect
                          [0.0, 0.0, 0.0, 0.0, 0.7],     # avg_pool_3x3
                          [0.2, 0.0, 0.1, 0.6, 0.0],     # nor_conv_3x3
                          [0.3, 0.3, 0.0, 0.0, 0.0]])    # tie: the earlier op, none
    with torch.no_grad():
        net.alphas["cell"].copy_(alpha)
    expected = {"edges": ["nor_conv_1x1", "none", "skip_connect", "avg_pool_3x3", "nor_conv_3x3", "none"]}
    for t in (10.0, 1.0, 0.1, 1e-3):
        net.temperature = t
        assert net.derive() == expected


# ------------------------------------------------------------------ the DARTS space
def test_darts_space_format_validation_and_operators():
    space = create_space("darts")
    arch = space.validate(DARTS_V2)
    assert arch["normal"][:2] == [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]
    swapped = json.loads(json.dumps(DARTS_V2))
    swapped["normal"][0], swapped["normal"][1] = swapped["normal"][1], swapped["normal"][0]
    assert space.validate(swapped) == arch  # the two terms of a node are unordered
    # from/to decisions and mutate of every space: tests/test_space_contract.py
    assert len(space.decisions()) == 24 and space.encode(arch).shape == (space.encoding_size,)
    bad = json.loads(json.dumps(DARTS_V2))
    bad["normal"][3] = ["sep_conv_3x3", 0]  # node 3 reads node 0 twice
    for arch_bad, field in ((bad, "node 3 inputs"), ({**DARTS_V2, "normal": DARTS_V2["normal"][:6]}, "normal"),
                            ({**DARTS_V2, "reduce": [["none", 0]] + DARTS_V2["reduce"][1:]}, "reduce[0] op"),
                            ({**DARTS_V2, "extra": 1}, "extra")):
        with pytest.raises(ArchError, match=field.replace("[", r"\[").replace("]", r"\]")):
            space.validate(arch_bad)
    with pytest.raises(ArchError, match="input"):
        space.validate({**DARTS_V2, "normal": [["skip_connect", 2]] + DARTS_V2["normal"][1:]})


def test_darts_cost_is_exact_and_matches_published_size():
    space = create_space("darts", channels=8, layers=5)
    for arch in (space.validate(DARTS_V2), space.sample(np.random.default_rng(3))):
        net = space.build_static(arch).eval()
        cost = space.cost(arch)
        assert cost["params"] == net.inference_parameters()
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 3, 32, 32))
        assert cost["flops"] == counter.get_total_flops() and cost["macs"] * 2 == cost["flops"]
        from spaces.darts import network_cost
        assert network_cost(arch, 8, 5, 10, 32, auxiliary=True)["params"] == sum(p.numel() for p in net.parameters())
    # DARTS-V2 at the CIFAR recipe (20 cells, 36 channels): 3.3M parameters as published
    assert create_space("darts").cost(DARTS_V2)["params"] == pytest.approx(3.35e6, rel=0.01)


def test_retrain_network_aux_head_and_seeded_drop_path():
    space = create_space("darts", channels=4, layers=3)
    net = space.build_static(DARTS_V2)
    x = torch.randn(2, 3, 32, 32)
    net.train()
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 10)
    net.drop_path_prob = 0.5
    with pytest.raises(ConfigError, match="generator"):
        net(x)
    outs = []
    for _ in range(2):
        net.drop_path_generator = torch.Generator().manual_seed(7)
        outs.append(net.forward_with_aux(x)[0])
    torch.testing.assert_close(outs[0], outs[1])  # the same seed drops the same paths
    net.eval()
    assert net.forward_with_aux(x)[1] is None  # no auxiliary head and no drop-path in eval mode


def _tiny_image_dataset(n=16, size=32, seed=0):
    from raynas.data import ImageDataset, Split

    g = torch.Generator().manual_seed(seed)
    splits = {name: Split(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                          torch.randint(0, 10, (n,), generator=g)) for name in ("train", "test")}
    return ImageDataset("tiny", 10, size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), splits)


def test_retrain_trains_the_genotype_and_exports_it(tmp_path):
    """DARTS' recipe on a tiny network: aux loss, drop-path schedule, test accuracy, and an export
    that rebuilds the same network (a derived genotype is an ordinary, exportable raynas arch)."""
    from raynas.differentiable.retraining import Retrainer
    from raynas.differentiable.config import RetrainConfig
    from raynas.export import load_exported

    cfg = RetrainConfig.from_any({"space": "darts", "space_options": {"channels": 2, "layers": 3},
                                  "arch": DARTS_V2, "epochs": 2, "batch_size": 8, "device": "cpu",
                                  "eval_batch_size": 16, "export_dir": str(tmp_path)})
    trainer = Retrainer(cfg, _tiny_image_dataset())
    history = trainer.fit()
    assert [r["drop_path_prob"] for r in history] == [0.0, 0.1]  # p·epoch/epochs, as DARTS
    assert all(0 <= r["test_accuracy"] <= 100 for r in history)
    assert history[-1]["params"] == create_space("darts", channels=2, layers=3).cost(DARTS_V2)["params"]
    model, config = load_exported(history[-1]["export"])
    assert config["arch"] == create_space("darts").validate(DARTS_V2)
    x = _images(3, size=32, dtype=torch.float32)
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), trainer.model(x))


# ------------------------------------------------------------------ search loop and Tune
def test_search_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="order"):
        DartsSearchConfig.from_any({"order": 3})
    with pytest.raises(ConfigError, match="unknown temperature schedule"):
        DartsSearchConfig.from_any({"schedule": "cosine"})
    with pytest.raises(ConfigError, match="unknown DartsSearchConfig option"):
        DartsSearchConfig.from_any({"temperature": 1})
    assert DartsSearchConfig.from_any(schedule="linear", order=2).method == "td-darts2"
    assert DartsSearchConfig.from_any().method == "darts1"


def test_sweep_options_get_absolute_paths(tmp_path, monkeypatch):
    """Tune runs each trial in its own folder: relative data, table and export paths are resolved
    in the driver's working directory before they travel."""
    from raynas.differentiable.sweep import absolute_paths

    monkeypatch.chdir(tmp_path)
    out = absolute_paths({"data": "cifar10:data/c10", "table": "t.csv", "export_dir": "exp", "seed": 3,
                          "data_options": {"cache_dir": "cache"}})
    assert out == {"data": f"cifar10:{tmp_path / 'data/c10'}", "table": str(tmp_path / "t.csv"),
                   "export_dir": str(tmp_path / "exp"), "seed": 3, "data_options": {"cache_dir": str(tmp_path / "cache")}}
    assert absolute_paths({"data": "digits", "table": None}) == {"data": "digits", "table": None}


def test_tiny_search_runs_through_tune_and_reports_every_epoch(ray_session, tmp_path):
    from raynas.differentiable.sweep import darts_search

    table = shared_data_path(TABLE)
    result = darts_search(
        {"space": "nb201", "supernet_options": {"channels": 2, "cells_per_stage": 1}, "data": "digits",
         "half_size": 64, "batch_size": 32, "epochs": 3, "max_steps_per_epoch": 1, "device": "cpu",
         "cpu_threads": 1, "table": str(table), "table_metrics": {"test_accuracy": "c10_test_200ep"}},
        grid={"schedule": ["constant", "linear"]}, storage_path=tmp_path, name="tiny", progress=False)
    assert len(result.trials) == 2 and not any(t["error"] for t in result.trials)
    import pandas as pd
    lookup = pd.read_csv(table).set_index("arch_str")["c10_test_200ep"]
    for trial in result.trials:
        history = trial["history"]
        assert [r["epoch"] for r in history] == [1, 2, 3]
        expected_t = [1.0] * 3 if trial["config"]["schedule"] == "constant" else [10.0, 5.05, 0.1]
        assert [r["temperature"] for r in history] == pytest.approx(expected_t)
        for r in history:
            arch = from_arch_str(r["arch_str"])
            assert json.loads(r["arch"]) == arch and r["skip_connections"] == arch["edges"].count("skip_connect")
            assert r["test_accuracy"] == lookup[r["arch_str"]]
            assert 0 <= r["val_accuracy"] <= 100 and r["method"] in ("darts1", "td-darts1")
    assert set(result.table["schedule"]) == {"constant", "linear"}
    saved = json.loads((tmp_path / "tiny" / "darts_results.json").read_text())
    assert len(saved["trials"]) == 2 and len(saved["trials"][0]["history"]) == 3
    # the sweep's folder is an experiment like any search's: search.json, journal, results.parquet
    import raynas
    from raynas.ledger import read_journal

    meta = json.loads((tmp_path / "tiny" / "search.json").read_text())
    assert meta["status"] == "finished" and meta["objectives"] == ["val_accuracy:max"]
    events = read_journal(tmp_path / "tiny")
    assert sum(e["event"] == "result" for e in events) == 6   # every epoch of both trials, as it came
    table = raynas.SearchResult.load(tmp_path / "tiny")
    assert len(table.df) == 2 and set(table.df["schedule"]) == {"constant", "linear"}
    by_trial = {t["trial_id"]: t["history"][-1] for t in result.trials}
    for row in table.df.itertuples():
        last = by_trial[row.trial_id]
        assert row.arch == last["arch"] and row.arch_id == raynas.arch_id(json.loads(last["arch"]))
        assert row.val_accuracy == last["val_accuracy"] and row.epoch == 3 and row.test_accuracy == last["test_accuracy"]
    assert table.best()["val_accuracy"] == max(r["val_accuracy"] for r in by_trial.values())
    (tmp_path / "tiny" / "results.parquet").unlink()   # the journal alone gives the same table
    rebuilt = raynas.SearchResult.load(tmp_path / "tiny").df
    assert rebuilt["arch_id"].tolist() == table.df["arch_id"].tolist()
    assert rebuilt["val_accuracy"].tolist() == table.df["val_accuracy"].tolist()
