"""The contract every registered search space keeps, checked for each name of ``list_spaces()``:
spec round trip, canonical archs from every operator, validation errors that name the field,
one option checker, and (for spaces with a weight-sharing supernet) an export that equals the
active subnet, counts what ``cost`` says and rebuilds from the spec.

Family-specific behaviour (published shapes, latency tables, NB201 isomorphisms, ...) stays in
the family's own test file.
"""
from __future__ import annotations

import json
import sys
from inspect import signature
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from raynas import (ArchError, ConfigError, SearchSpace, arch_id, create_space, list_spaces,
                    space_from_spec)
from raynas.registry import SPACES
from spaces.layers import ElasticLayer

OFA_TINY = dict(width_mult=0.25)
HYBRID_TINY = dict(img_size=16, channels=16, num_layers=3, expand_ratios=[2, 4], num_heads=[1, 2],
                   head_dim=8, mlp_ratios=[2.0, 4.0])
VIT_SMALL = dict(embed_dims=[16, 32], depths=[1, 2], num_heads=[1, 2], mlp_ratios=[2.0, 3.0],
                 img_size=16, patch_size=8, head_dim=8, num_classes=10)
#: options of the spaces that have no defaults (the "your own choices" entries)
REQUIRED = {"vit": VIT_SMALL}
#: options the arch-level checks run with besides each space's defaults
ARCH_VARIANTS = [
    ("ofa_mbv3_cifar", dict(width_mult=0.5, depth_choices=(1, 2), kernel_choices=(5, 3),
                            expand_choices=(2.5, 4), dropout=0.2, kernel_transform=True,
                            resolutions=(16, 32), stage_strides=(2, 2, 2, 1, 2), num_classes=7)),
    ("autoformer_small", dict(num_classes=100)),
    ("synthetic", dict(num_layers=5, num_choices=3, seed=7)),
    ("synthetic", dict(num_layers=6, num_choices=3)),
    ("hybrid_cifar", HYBRID_TINY),
]
#: (name, options, seed) of the export checks: CPU-sized models (every value a real option)
EXPORT_VARIANTS = [
    ("ofa_mbv3_cifar", OFA_TINY, 1),
    ("ofa_mbv3_cifar", dict(OFA_TINY, kernel_transform=True), 2),
    ("ofa_mbv3", dict(width_mult=0.35, kernel_transform=True, resolutions=(128,)), 3),
    ("vit_cifar", {}, 0),
    ("vit", VIT_SMALL, 0),
    ("hybrid_cifar", HYBRID_TINY, 0),
    ("hybrid", dict(HYBRID_TINY, num_layers=2), 0),
]
#: a choice-list option of each family with choice lists, to check the one option checker
CHOICE_OPTION = {"ofa_mbv3": "kernel_choices", "ofa_mbv3_cifar": "depth_choices", "vit": "num_heads",
                 "vit_cifar": "embed_dims", "autoformer_tiny": "depths", "autoformer_small": "depths",
                 "autoformer_base": "mlp_ratios", "hybrid": "expand_ratios", "hybrid_cifar": "mlp_ratios"}
HERE = Path(__file__).resolve().parent


def _registered_by_a_test_helper(name: str) -> bool:
    """Test fixtures (tests/tiny_supernet.py) register spaces when another test module imports
    them; the contract is for the spaces a user can name (built-ins and installed plug-ins)."""
    module = sys.modules.get(SPACES.module_of(name))
    return module is not None and Path(getattr(module, "__file__", None) or "/").resolve().parent == HERE


NAMES = [name for name in list_spaces() if not _registered_by_a_test_helper(name)]
ARCH_CASES = [(name, REQUIRED.get(name, {})) for name in NAMES] + ARCH_VARIANTS
# every registered space gets an export check: its variants above, or its defaults
EXPORT_CASES = EXPORT_VARIANTS + [(name, REQUIRED.get(name, {}), 0) for name in NAMES
                                  if name not in {n for n, _, _ in EXPORT_VARIANTS}]


def _id(case) -> str:
    name, options = case[0], case[1]
    return name + ("+" + ",".join(sorted(options)) if options else "")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_builtin_family_is_covered():
    assert {"synthetic", "nb201", "darts", "ofa_mbv3", "vit", "hybrid"} <= set(NAMES)


@pytest.mark.parametrize("name,options", ARCH_CASES, ids=[_id(c) for c in ARCH_CASES])
def test_spec_round_trip_rebuilds_the_same_space(name, options):
    space = create_space(name, **options)
    spec = json.loads(json.dumps(space.spec()))
    again = space_from_spec(spec)
    assert again.spec() == space.spec() and again.name == name and again.options == space.options
    assert [(d.name, d.choices) for d in again.decisions()] == [(d.name, d.choices) for d in space.decisions()]
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = space.sample(rng)
        assert again.cost(arch) == space.cost(arch)
        assert again.encode(arch).tolist() == space.encode(arch).tolist()
        for same in ("score", "layer_descriptors"):  # family extras must survive the trip too
            if hasattr(space, same):
                assert getattr(again, same)(arch) == getattr(space, same)(arch)


@pytest.mark.parametrize("name,options", ARCH_CASES, ids=[_id(c) for c in ARCH_CASES])
def test_operators_yield_valid_canonical_archs(name, options):
    space = create_space(name, **options)
    rng = np.random.default_rng(0)
    assert [space.sample(np.random.default_rng(3)) for _ in range(2)] == \
        [space.sample(np.random.default_rng(3)) for _ in range(2)]
    for arch in (space.smallest(), space.largest()):
        assert space.validate(arch) == arch
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        assert space.validate(a) == a == json.loads(json.dumps(a))
        child = space.mutate(a, rng)
        assert space.validate(child) == child and arch_id(child) != arch_id(a)
        mixed = space.crossover(a, b, rng)
        assert space.validate(mixed) == mixed
        va, vb, vm = space.to_decisions(a), space.to_decisions(b), space.to_decisions(mixed)
        for d in space.decisions():  # every decision both parents set comes from one of them
            if None not in (va[d.name], vb[d.name], vm[d.name]):
                assert vm[d.name] in (va[d.name], vb[d.name]), d.name
        assert space.from_decisions(va) == a
        code = space.encode(a)
        active = sum(v is not None for v in space.to_decisions(a).values())
        assert code.shape == (space.encoding_size,) and code.sum() == active
    assert all(space.is_valid(n) for n in space.neighbors(a))


@pytest.mark.parametrize("name", NAMES)
def test_validate_names_the_bad_field(name):
    space = create_space(name, **REQUIRED.get(name, {}))
    with pytest.raises(ArchError, match="<arch>"):
        space.validate(["not", "a", "dict"])
    with pytest.raises(ArchError, match="no_such_field"):
        space.validate({**space.smallest(), "no_such_field": 1})


@pytest.mark.parametrize("name", sorted(CHOICE_OPTION))
def test_one_option_checker_rejects_duplicate_and_bad_choices(name):
    option = CHOICE_OPTION[name]
    base = REQUIRED.get(name, {})
    values = list(create_space(name, **base).options[option])
    with pytest.raises(ConfigError, match=f"'{option}' has duplicate entries"):
        create_space(name, **{**base, option: values + values[:1]})
    with pytest.raises(ConfigError, match=option):
        create_space(name, **{**base, option: []})
    with pytest.raises(ConfigError, match=option):
        create_space(name, **{**base, option: [values[0], "x"]})


def _perturb(net: nn.Module) -> nn.Module:
    """Non-trivial weights and BN statistics, so slicing mistakes cannot hide behind 0s and 1s."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.eval()


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name,options,seed", EXPORT_CASES, ids=[_id(c) for c in EXPORT_CASES])
def test_export_equals_the_active_subnet_counts_its_cost_and_rebuilds_from_spec(name, options, seed):
    if name.startswith("autoformer_"):
        pytest.skip("AutoFormer supernets (5-80M parameters) are exported on the meta device in "
                    "test_vit.py's published-size checks; the contract exports the small vit spaces")
    space = create_space(name, **options)
    if type(space).build_supernet is SearchSpace.build_supernet:
        pytest.skip(f"space '{name}' has no weight-sharing supernet")
    seeded = "seed" in signature(space.build_supernet).parameters
    net = space.build_supernet(seed=seed) if seeded else space.build_supernet()
    _perturb(net)
    rng = np.random.default_rng(seed)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(2)]
    outputs = []
    for arch in archs:
        net.activate(arch)
        size = space.input_resolution(arch)
        x = torch.randn(2, getattr(space, "in_chans", 3), size, size, generator=torch.Generator().manual_seed(seed))
        static = net.export(arch).eval()
        with torch.no_grad():
            expected, got = net(x), static(x)
        assert (expected - got).abs().max().item() < 1e-5, arch
        assert not any(isinstance(m, ElasticLayer) or "Elastic" in type(m).__name__ for m in static.modules())
        cost = space.cost(arch)
        assert sum(p.numel() for p in static.parameters()) == cost["params"]
        assert _flops(static, x) == len(x) * cost["flops"] == len(x) * 2 * cost["macs"]
        rebuilt = space_from_spec(json.loads(json.dumps(space.spec()))).build_static(arch).eval()
        rebuilt.load_state_dict(static.state_dict())
        with torch.no_grad():
            assert torch.equal(rebuilt(x), got)
        outputs.append(expected)
    # the comparison can fail: the largest and smallest subnets compute different functions
    assert (outputs[0] - outputs[1]).abs().max().item() > 1e-3
    # exporting another arch leaves the active subnet as it was
    with torch.no_grad():
        before = net(x)
        net.export(archs[0])
        assert torch.equal(net(x), before)
    assert net.active_arch == archs[-1]
