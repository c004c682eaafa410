"""The NAS-Bench-201 space: arch strings, isomorphism classes, the built network and its cost."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from raynas import ArchError, ConfigError, arch_id, create_space
from spaces.nb201 import (EDGES, canonical_cell, cell_signature, from_arch_str, nb201_unique_str,
                          num_isomorphism_classes, to_arch_str)
from spaces.nb201_net import NB201Network
from spaces.nb201_ops import OP_NAMES, ResNetBasicBlock, make_op
from conftest import shared_data_path

TABLE = "nb201/nb201_cifar10.csv"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(shared_data_path(TABLE))


@pytest.fixture(scope="module")
def table_archs(table):
    return [from_arch_str(s) for s in table["arch_str"]]


@pytest.fixture(scope="module")
def space():
    return create_space("nb201")


def test_arch_str_round_trip_over_the_whole_table(table, table_archs):
    assert [to_arch_str(a) for a in table_archs] == table["arch_str"].tolist()
    assert from_arch_str(BEST) == {"edges": ["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3",
                                             "skip_connect", "nor_conv_3x3", "nor_conv_3x3"]}
    # inputs of a node may be listed in any order
    shuffled = "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_3x3~2|skip_connect~0|nor_conv_3x3~1|"
    assert from_arch_str(shuffled) == from_arch_str(BEST)


@pytest.mark.parametrize("bad, needle", [
    ("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "nor_conv_5x5"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "exactly once"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "exactly once"),
    ("|none~0|+|none~0|none~1|", "3 node groups"),
    ("|none-0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~input_index"),
])
def test_bad_arch_strings_name_the_problem(bad, needle):
    with pytest.raises(ArchError) as info:
        from_arch_str(bad)
    assert needle in str(info.value)


def test_validate_names_field_and_allowed_ops(space):
    with pytest.raises(ArchError) as info:
        space.validate({"edges": ["none"] * 5 + ["conv"]})
    msg = str(info.value)
    assert "edges[5] (3<-2)" in msg and "'conv'" in msg and "nor_conv_3x3" in msg
    with pytest.raises(ArchError):
        space.validate({"edges": ["none"] * 6, "extra": 1})
    with pytest.raises(ArchError):
        space.validate({"edges": ["none"] * 4})


def test_space_operators_and_enumeration(space):
    rng = np.random.default_rng(0)
    assert [d.name for d in space.decisions()] == [f"edge_{j}_{i}" for j, i in EDGES]
    assert space.smallest() == {"edges": ["none"] * 6}
    assert space.largest() == {"edges": ["nor_conv_3x3"] * 6}
    # mutate/crossover/encode of every space: tests/test_space_contract.py
    for _ in range(50):
        assert space.encode(space.sample(rng)).sum() == 6
    assert len(space.neighbors(space.smallest())) == 6 * 4
    assert sum(1 for _ in space.enumerate()) == 5 ** 6


def test_nb201_unique_str_is_reproduced_exactly(table, table_archs):
    ours = [nb201_unique_str(a) for a in table_archs]
    assert ours == table["unique_str"].tolist()


def test_canonical_cell_agrees_with_unique_str_classes(table, table_archs):
    frame = pd.DataFrame({
        "unique": table["unique_str"],
        "function": ["+".join(canonical_cell(a)["edges"]) for a in table_archs],
        "exact": ["+".join(canonical_cell(a, key="unique_str")["edges"]) for a in table_archs],
    })
    # same NB201 unique_str => same canonical form, for every row
    assert (frame.groupby("unique")["function"].nunique() == 1).all()
    # key="unique_str" reproduces NB201's classes exactly, both ways
    assert (frame.groupby("unique")["exact"].nunique() == 1).all()
    assert (frame.groupby("exact")["unique"].nunique() == 1).all()
    assert frame["exact"].nunique() == table["unique_str"].nunique() == num_isomorphism_classes("unique_str") == 6466
    # the function key merges only NB201 classes that differ in how zeros were spelled
    assert frame["function"].nunique() == num_isomorphism_classes() == 4930
    single = (frame.groupby("function")["unique"].nunique() == 1).mean()
    assert single > 0.85


def test_isomorphic_arch_strings_share_a_canonical_form():
    # node 1 feeds nothing that survives: its op is irrelevant
    a = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"
    # sums commute: conv3(x) + conv1(x) reached through nodes 1 and 2 in either role
    c = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"
    d = "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"
    # an op applied to an all-zero node is zero
    e = "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|"
    f = "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|skip_connect~2|"
    for x, y in ((a, b), (c, d), (e, f)):
        ax, ay = from_arch_str(x), from_arch_str(y)
        assert canonical_cell(ax) == canonical_cell(ay)
        same_nb201 = canonical_cell(ax, key="unique_str") == canonical_cell(ay, key="unique_str")
        # NB201's string flattens node sums before sorting, so it misses the (c, d) isomorphism
        assert same_nb201 == ((x, y) != (c, d))
    assert canonical_cell(from_arch_str(a)) == canonical_cell(from_arch_str(c))  # conv3(x) + conv1(x) too
    assert len({arch_id(canonical_cell(from_arch_str(s))) for s in (a, e, BEST)}) == 3
    # the representative is a member of its class, and canonicalising is idempotent
    for s in (a, c, e, BEST):
        rep = canonical_cell(from_arch_str(s))
        assert cell_signature(rep) == cell_signature(from_arch_str(s))
        assert canonical_cell(rep) == rep
    with pytest.raises(ConfigError):
        canonical_cell(from_arch_str(a), key="nope")


def test_built_params_equal_the_table_for_200_archs(table, space):
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table), size=200, replace=False)
    with torch.device("meta"):  # parameter shapes only: no weight init
        for r in rows:
            arch = from_arch_str(table["arch_str"].iloc[r])
            net = space.build_static(arch, 10)
            count = sum(p.numel() for p in net.parameters())
            assert abs(count / 1e6 - table["params_mb"].iloc[r]) < 1e-5, table["arch_str"].iloc[r]
            assert count == space.cost(arch)["params"]


def test_analytic_params_equal_the_table_for_every_arch(table, table_archs, space):
    params = np.array([space.cost(a)["params"] for a in table_archs])
    assert np.abs(params / 1e6 - table["params_mb"].to_numpy()).max() < 1e-5


def test_analytic_macs_and_flops_match_flop_counter(space):
    rng = np.random.default_rng(1)
    archs = [space.smallest(), space.largest(), space.sample(rng)]
    for arch in archs:
        with torch.device("meta"):
            net = space.build_static(arch)
            with FlopCounterMode(display=False) as counter:
                net(torch.empty(1, 3, 32, 32))
        cost = space.cost(arch)
        assert counter.get_total_flops() == cost["flops"] == 2 * cost["macs"]


def test_network_forward_shapes_and_other_widths():
    space = create_space("nb201", channels=8, cells_per_stage=1, num_classes=100)
    arch = from_arch_str(BEST)
    net = space.build_static(arch)
    assert isinstance(net, NB201Network)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 100)
    assert net.forward_features(x).shape == (2, 32, 8, 8)
    assert sum(p.numel() for p in net.parameters()) == space.cost(arch)["params"]
    assert space.build_static(arch, 10)(x).shape == (2, 10)
    with pytest.raises(ConfigError):
        create_space("nb201", resolution=30)


@pytest.mark.parametrize("name", OP_NAMES)
def test_ops_keep_nb201_signatures_for_reuse(name):
    x = torch.randn(2, 4, 8, 8)
    same = make_op(name, 4, 4, 1, affine=False, track_running_stats=False)
    assert same(x).shape == (2, 4, 8, 8)
    reduce = make_op(name, 4, 8, 2, affine=True, track_running_stats=True)
    assert reduce(x).shape == (2, 8, 4, 4)
    if name == "none":
        assert float(same(x).abs().sum()) == 0.0
    if name == "skip_connect":
        assert torch.equal(same(x), x)
    with pytest.raises(ArchError):
        make_op("max_pool_3x3", 4, 4, 1)


def test_reduction_block_matches_nb201_resnet_block():
    block = ResNetBasicBlock(16, 32, 2)
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    # conv_a 16*32*9 + BN, conv_b 32*32*9 + BN, shortcut 1x1 conv 16*32 without BN
    assert sum(p.numel() for p in block.parameters()) == 16 * 32 * 9 + 64 + 32 * 32 * 9 + 64 + 16 * 32
