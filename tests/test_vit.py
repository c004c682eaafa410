"""Elastic ViT space: export to timm equals the supernet subnet, AutoFormer parameter counts,
FLOPs against FlopCounterMode, weight entanglement, validation and the search operators."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from timm.data import resolve_data_config
from timm.models.vision_transformer import VisionTransformer
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import shared_data_path
from raynas import ArchError, ConfigError, create_space, space_from_spec
from spaces.vit import (AUTOFORMER_BASE, AUTOFORMER_SMALL, AUTOFORMER_TINY, ElasticViTSpace,
                        autoformer_retrain_arch, autoformer_space_options)

PUBLISHED_PARAMS = {"T": 5.8e6, "S": 22.9e6, "B": 53.7e6}
PRESETS = {"T": AUTOFORMER_TINY, "S": AUTOFORMER_SMALL, "B": AUTOFORMER_BASE}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cifar():
    torch.manual_seed(0)
    space = create_space("vit_cifar")
    net = space.build_supernet()
    with torch.no_grad():  # perturb so LayerNorm/bias slicing mistakes cannot hide behind 1s and 0s
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return space, net.eval()


def _images(n=2, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_export_is_a_timm_vit_with_the_subnets_features(cifar):
    # logits equal to the active subnet, exact cost, rebuild from the spec: test_space_contract.py
    space, net = cifar
    rng = np.random.default_rng(0)
    x = _images()
    for arch in [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(6)]:
        net.activate(arch)
        model = net.export(arch).eval()
        assert isinstance(model, VisionTransformer)
        with torch.no_grad():
            feat_diff = (net.forward_features(x) - model.forward_features(x)).abs().max().item()
            assert model(x).shape == (2, space.num_classes)
        assert feat_diff < 1e-5


def test_exported_blocks_carry_per_layer_widths_and_rebuild_from_spec(cifar):
    space, net = cifar
    arch = space.validate({"embed_dim": 96, "depth": 5, "num_heads": [1, 2, 1, 2, 2],
                           "mlp_ratio": [2.0, 4.0, 3.0, 2.0, 4.0]})
    model = net.export(arch).eval()
    assert model.num_classes == 10 and model.embed_dim == 96 and len(model.blocks) == 5
    for block, heads, ratio in zip(model.blocks, arch["num_heads"], arch["mlp_ratio"]):
        assert block.attn.num_heads == heads and block.attn.head_dim == 64
        assert block.attn.qkv.out_features == 3 * 64 * heads
        assert block.mlp.fc1.out_features == int(96 * ratio)
    assert sum(p.numel() for p in model.parameters()) == space.cost(arch)["params"]
    # (space spec, arch) + state dict rebuild the same model
    again = space_from_spec(json.loads(json.dumps(space.spec()))).build_static(arch).eval()
    again.load_state_dict(model.state_dict())
    x = _images(seed=1)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        assert model.forward_head(model.forward_features(x)).shape == (2, 10)
    assert resolve_data_config({}, model=model)["input_size"] == (3, 32, 32)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)


def test_qkv_rows_are_head_major_and_export_reorders_them(cifar):
    """Supernet qkv rows are [q0 k0 v0 | q1 k1 v1]; timm's are [q0 q1 | k0 k1 | v0 v1]. Rows of
    heads past the active count (and columns past the embed dim) are never used."""
    space, net = cifar
    arch = space.validate({"embed_dim": 64, "depth": 4, "num_heads": [1, 2, 1, 1],
                           "mlp_ratio": [2.0] * 4})
    net.activate(arch)
    supernet_rows = net.blocks[1].attn.qkv.weight[:, :64]
    timm_rows = net.export(arch).blocks[1].attn.qkv.weight
    for part in range(3):  # q, k, v
        for head in range(2):
            timm_block = timm_rows[part * 128 + head * 64:part * 128 + (head + 1) * 64]
            ours = supernet_rows[head * 192 + part * 64:head * 192 + (part + 1) * 64]
            assert torch.equal(timm_block, ours)

    x = _images(seed=2)
    qkv, off = net.blocks[0].attn.qkv.weight, net.blocks[5].attn.qkv.weight
    saved, saved_off = qkv.detach().clone(), off.detach().clone()
    with torch.no_grad():
        before = net(x)
        qkv[192:] = 100.0      # the second head of layer 0 (1 head active)
        qkv[:, 64:] = 100.0    # columns past embed dim 64
        off.fill_(100.0)       # a layer the depth switches off
        assert torch.equal(net(x), before)
        qkv.copy_(saved)
        qkv[64:65, :64] += 1.0  # first key row of head 0
        assert not torch.allclose(net(x), before)
        qkv.copy_(saved)
        off.copy_(saved_off)


def test_only_leading_slices_receive_gradients():
    space = create_space("vit_cifar")
    net = space.build_supernet().train()
    arch = space.validate({"embed_dim": 64, "depth": 4, "num_heads": [1, 2, 1, 1],
                           "mlp_ratio": [2.0, 2.0, 3.0, 2.0]})
    net.activate(arch)
    net(_images()).logsumexp(dim=1).sum().backward()
    fc1 = net.blocks[0].mlp.fc1.weight.grad
    assert fc1[:128, :64].abs().sum() > 0
    assert fc1[128:].abs().sum() == 0 and fc1[:, 64:].abs().sum() == 0
    assert net.patch_embed.proj.weight.grad[64:].abs().sum() == 0
    assert net.blocks[4].attn.qkv.weight.grad is None  # beyond depth 4


def test_num_classes_follows_the_dataset_and_cost_follows_it():
    space = create_space("vit_cifar")
    net = space.build_supernet(100)  # e.g. CIFAR-100 on the 10-class preset
    arch = space.smallest()
    model = net.export(arch)
    assert net(_images()).shape == (2, 100) and model.num_classes == 100
    assert sum(p.numel() for p in model.parameters()) == space.cost(arch, num_classes=100)["params"]
    assert space.cost(arch)["params"] < space.cost(arch, num_classes=100)["params"]


def test_dropout_scales_with_embed_dim():
    space = create_space("vit_cifar")
    net = space.build_supernet(drop_rate=0.2, attn_drop_rate=0.1, drop_path_rate=0.1)
    arch = space.smallest()  # embed 64 of the supernet's 128: half the dropout
    model = net.export(arch)
    assert model.pos_drop.p == pytest.approx(0.1)
    assert model.blocks[0].mlp.drop1.p == pytest.approx(0.1)
    assert model.blocks[0].attn.proj_drop.p == pytest.approx(0.1)
    assert model.blocks[0].attn.attn_drop.p == pytest.approx(0.05)
    assert model.blocks[3].drop_path1.drop_prob == pytest.approx(0.1 * 3 / 5)  # supernet depth 6


def test_flops_match_flop_counter(cifar):
    space, net = cifar
    rng = np.random.default_rng(3)
    x = _images(n=3)
    for arch in (space.largest(), space.sample(rng)):
        net.activate(arch)
        for model in (net, net.export(arch).eval()):
            # FlopCounterMode does not count the fused CPU attention kernel; the math backend
            # runs the same attention as matmuls it does count
            with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), \
                    FlopCounterMode(display=False) as fc:
                model(x)
            assert fc.get_total_flops() == 3 * space.cost(arch)["flops"]
    cost = space.cost(space.largest())
    assert cost["flops"] == 2 * cost["macs"]


@pytest.mark.parametrize("name", ["T", "S", "B"])
def test_autoformer_published_subnet_params(name):
    path = shared_data_path(f"autoformer/subnet_AutoFormer-{name}.yaml")
    arch = autoformer_retrain_arch(path)
    # AutoFormer-T's published subnet uses MLP ratio 3.0, outside its own space: widen to it
    space = ElasticViTSpace(**autoformer_space_options(path, include_retrain=True))
    assert (space.img_size, space.patch_size, space.num_classes) == (224, 16, 1000)
    params = space.cost(arch)["params"]
    assert abs(params - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.03
    with torch.device("meta"):  # full-size structure without allocating or initialising weights
        net = space.build_supernet()
        exported = net.export(arch)
        static = space.build_static(arch)
    assert isinstance(exported, VisionTransformer)
    assert sum(p.numel() for p in exported.parameters()) == params
    assert sum(p.numel() for p in static.parameters()) == params


@pytest.mark.parametrize("name", ["T", "S", "B"])
def test_presets_match_autoformer_yaml(name):
    path = shared_data_path(f"autoformer/supernet_supernet-{name}.yaml")
    preset = create_space({"T": "autoformer_tiny", "S": "autoformer_small",
                           "B": "autoformer_base"}[name])
    for key, value in autoformer_space_options(path).items():
        assert preset.options[key] == value, key
    assert preset.options["img_size"] == 224 and preset.options["num_classes"] == 1000
    assert PRESETS[name]["embed_dims"] == preset.embed_dims


def test_autoformer_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SUPERNET: {EMBED_DIM: 64}\n")
    with pytest.raises(ConfigError, match="SEARCH_SPACE"):
        autoformer_space_options(bad)
    with pytest.raises(ConfigError, match="not found"):
        autoformer_space_options(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="RETRAIN"):
        autoformer_retrain_arch({"SUPERNET": {}})
    with pytest.raises(ConfigError, match="supernet_embed_dim"):
        ElasticViTSpace(embed_dims=[64, 128], depths=[2], num_heads=[1], mlp_ratios=[2.0],
                        supernet_embed_dim=96)


def test_validate_names_the_bad_field():
    space = create_space("vit_cifar")
    good = {"embed_dim": 96, "depth": 4, "num_heads": [1, 2, 1, 2], "mlp_ratio": [2, 3, 4, 2]}
    assert space.validate(good)["mlp_ratio"] == [2.0, 3.0, 4.0, 2.0]
    cases = [
        ({**good, "embed_dim": 100}, "embed_dim"),
        ({**good, "depth": 7}, "depth"),
        ({**good, "num_heads": [1, 2, 1]}, "num_heads"),
        ({**good, "num_heads": [1, 2, 3, 1]}, "num_heads[2]"),
        ({**good, "mlp_ratio": [2.0, 3.0, 4.0, "2"]}, "mlp_ratio[3]"),
        ({**good, "extra": 1}, "extra"),
        ({k: v for k, v in good.items() if k != "depth"}, "depth"),
    ]
    for arch, field in cases:
        with pytest.raises(ArchError) as info:
            space.validate(arch)
        assert info.value.field == field and repr(field) in str(info.value)
    with pytest.raises(ConfigError, match="num_classes"):
        space.build_supernet(num_classes=0)


def test_operators_keep_one_entry_per_active_layer():
    # validity of every operator's archs, spec round trip: tests/test_space_contract.py
    space = create_space("vit_cifar")
    rng = np.random.default_rng(0)
    for _ in range(100):
        a, b = space.sample(rng), space.sample(rng)
        for child in (space.mutate(a, rng), space.crossover(a, b, rng)):
            assert len(child["num_heads"]) == len(child["mlp_ratio"]) == child["depth"]
    arch = space.smallest()
    assert arch == {"embed_dim": 64, "depth": 4, "num_heads": [1] * 4, "mlp_ratio": [2.0] * 4}
    decisions = space.to_decisions(arch)
    assert decisions["l5.heads"] is None and decisions["l3.heads"] == 1
    assert all(space.is_valid(n) for n in space.neighbors(arch))
    assert space.encode(arch).shape == (space.encoding_size,)

