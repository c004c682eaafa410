"""The shared elastic layers (spaces.layers): each exports its static layer for a setting, and
that layer round-trips through its config."""
from __future__ import annotations

import json

import pytest
import torch

from spaces.layers import (ElasticBatchNorm2d, ElasticConv2d, ElasticDepthwiseConv2d, ElasticLayer,
                           ElasticMBConv, ElasticSqueezeExcite, MBConv, leading)
from spaces.layers.transformer import ElasticLayerNorm, ElasticTransformerBlock, LinearWeights


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters (fresh ones are 0/1)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
    return module.eval()


def _configure(layer, setting):
    if isinstance(layer, ElasticConv2d):
        layer.active_out_channels = setting["out_channels"]
    elif isinstance(layer, ElasticDepthwiseConv2d):
        layer.active_kernel = setting["kernel"]
    elif isinstance(layer, ElasticMBConv):
        layer.configure(setting["kernel"], setting["expand_ratio"])
    elif isinstance(layer, ElasticTransformerBlock):
        layer.configure(setting["num_heads"], setting["mlp_ratio"])


CASES = [  # (layer, setting, input shape)
    (lambda: ElasticConv2d(16, 24, 3, 2, bias=True), {"in_channels": 8, "out_channels": 12}, (2, 8, 9, 9)),
    (lambda: ElasticDepthwiseConv2d(16, (3, 5, 7), 1, kernel_transform=True), {"channels": 12, "kernel": 5},
     (2, 12, 8, 8)),
    (lambda: ElasticBatchNorm2d(16), {"num_features": 8}, (3, 8, 5, 5)),
    (lambda: ElasticSqueezeExcite(32), {"channels": 24}, (2, 24, 4, 4)),
    (lambda: ElasticMBConv(16, 16, 1, "hswish", True, (3, 5, 7), (3, 4, 6)), {"kernel": 5, "expand_ratio": 4},
     (2, 16, 8, 8)),
    (lambda: ElasticMBConv(8, 16, 2, "relu", False, (3, 5), (3, 6)), {"kernel": 3, "expand_ratio": 3},
     (2, 8, 9, 9)),
    (lambda: ElasticMBConv(12, 12, 1, "silu", False, (3,), (2, 4), channel_divisor=1),
     {"kernel": 3, "expand_ratio": 2}, (2, 12, 6, 6)),
    (lambda: ElasticLayerNorm(32, eps=1e-6), {"dim": 24}, (2, 5, 24)),
    (lambda: ElasticTransformerBlock(32, 4, 8, 4.0), {"dim": 24, "num_heads": 2, "mlp_ratio": 3.0},
     (2, 5, 24)),
]


@pytest.mark.parametrize("make,setting,shape", CASES, ids=lambda v: type(v).__name__ if isinstance(v, type) else None)
def test_export_equals_the_elastic_layer_and_round_trips_through_its_config(make, setting, shape):
    torch.manual_seed(1)
    layer = _perturbed(make())
    assert isinstance(layer, ElasticLayer)
    _configure(layer, setting)
    x = torch.randn(*shape)
    static = layer.export(**setting).eval()
    assert not isinstance(static, ElasticLayer)
    with torch.no_grad():
        assert torch.allclose(static(x), layer(x), atol=1e-5), type(layer).__name__
    # the config is plain JSON and rebuilds the same structure; the state dict fills it exactly
    config = json.loads(json.dumps(layer.static_config(**setting)))
    rebuilt = type(layer).static_from_config(config).eval()
    rebuilt.load_state_dict(static.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), static(x))
    # export copies: training the static layer leaves the shared weights alone
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        for p in static.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_mbconv_config_is_its_geometry():
    block = ElasticMBConv(16, 24, 2, "relu", True, (3, 5), (3, 6))
    static = block.export(kernel=5, expand_ratio=6)
    assert isinstance(static, MBConv) and static.config == block.static_config(kernel=5, expand_ratio=6)
    assert MBConv.from_config(static.config).geometry == static.geometry == block.geometry(5, 6)


def test_linear_weights_slice_to_a_static_linear():
    weights = LinearWeights(16, 10)
    linear = weights.export(in_features=12, out_features=7)
    assert isinstance(linear, torch.nn.Linear) and tuple(linear.weight.shape) == (7, 12)
    assert torch.equal(linear.weight, weights.weight[:7, :12]) and torch.equal(linear.bias, weights.bias[:7])


def test_leading_is_a_view_the_full_tensor_itself_and_none_for_none():
    t = torch.arange(24.0).reshape(4, 6)
    assert leading(t, 4, 6) is t and leading(None, 3) is None
    part = leading(t, 2, 3)
    assert part.data_ptr() == t.data_ptr() and part.tolist() == [[0, 1, 2], [6, 7, 8]]


def test_elastic_batch_norm_updates_only_the_active_channels():
    bn = ElasticBatchNorm2d(8).train()
    bn(torch.randn(4, 3, 2, 2) + 5.0)
    assert (bn.running_mean[:3] != 0).all() and (bn.running_mean[3:] == 0).all()
