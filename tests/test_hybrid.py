"""Hybrid conv-vs-attention space: weighted sampling forward and α gradient, the convex and
uniform modes, seeded draws, export, cost, validation and the search operators."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raynas import ArchError, ConfigError, create_space
from spaces.hybrid_supernet import HybridNet

# 16x16 images, 8x8 feature map (64 tokens), 3 layers: fast on a shared CPU
TINY = dict(img_size=16, channels=16, num_layers=3, expand_ratios=[2, 4], num_heads=[1, 2],
            head_dim=8, mlp_ratios=[2.0, 4.0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _space():
    return create_space("hybrid_cifar", **TINY)


def _perturbed(net):
    with torch.no_grad():
        for p in net.weight_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _images(n=2, seed=0, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _feature_map(seed=1):
    return torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("use_conv", [True, False])
def test_weighted_sampling_forward_is_the_op_and_alpha_grad_is_its_output(use_conv):
    torch.manual_seed(0)
    net = _perturbed(_space().build_supernet(mode="weighted")).double().eval()
    layer = net.layers[1]
    x, upstream = _feature_map(), _feature_map(seed=2)
    with torch.no_grad():
        f, g = layer.conv(x), layer.attn(x)
    op_out = f if use_conv else g

    # ∂out/∂α directly: substitute a leaf α
    alpha = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    layer.alpha = lambda: alpha
    out = layer(x, "weighted", use_conv)
    assert torch.equal(out, op_out)  # forward is exactly the sampled op
    (grad_alpha,) = torch.autograd.grad(out, alpha, upstream)
    expected = (upstream * f).sum() if use_conv else -(upstream * g).sum()
    assert torch.allclose(grad_alpha, expected, rtol=1e-10, atol=1e-12)
    del layer.alpha

    # through the learned logit: chain rule with dα/dlogit = α(1−α)
    with torch.no_grad():
        layer.alpha_logit.fill_(0.7)
    a = torch.sigmoid(torch.tensor(0.7, dtype=torch.float64))
    out = layer(x, "weighted", use_conv)
    (grad_logit,) = torch.autograd.grad(out, layer.alpha_logit, upstream)
    assert torch.allclose(grad_logit, expected * a * (1 - a), rtol=1e-10, atol=1e-12)
    assert expected.abs() > 1e-3  # the check is not vacuous


def test_weighted_supernet_forward_equals_the_sampled_arch():
    torch.manual_seed(0)
    space = _space()
    net = _perturbed(space.build_supernet(mode="weighted", seed=3)).eval()
    arch_net = space.build_supernet()
    arch_net.load_state_dict(net.state_dict())
    arch_net.eval()
    x = _images()
    seen = set()
    for step in range(6):
        net.set_step(step)
        with torch.no_grad():
            out = net(x)
        sampled = {"layers": [
            {"op": "conv", "expand_ratio": 4} if op == "conv" else
            {"op": "attn", "num_heads": 2, "mlp_ratio": 4.0} for op in net.last_ops]}
        arch_net.activate(sampled)
        with torch.no_grad():
            assert torch.equal(out, arch_net(x))
        seen.update(net.last_ops)
    assert seen == {"conv", "attn"}


def test_convex_mode_gradient():
    torch.manual_seed(0)
    net = _perturbed(_space().build_supernet(mode="convex")).double().eval()
    layer = net.layers[0]
    x, upstream = _feature_map(), _feature_map(seed=2)
    with torch.no_grad():
        layer.alpha_logit.fill_(-0.4)
        f, g = layer.conv(x), layer.attn(x)
    a = torch.sigmoid(torch.tensor(-0.4, dtype=torch.float64))
    out = layer(x, "convex", None)
    assert torch.allclose(out, a * f + (1 - a) * g)
    (grad,) = torch.autograd.grad(out, layer.alpha_logit, upstream)
    assert torch.allclose(grad, (upstream * (f - g)).sum() * a * (1 - a), rtol=1e-10)

    def projected_output(logit):  # the layer's convex mixture as a function of its logit
        layer.alpha = lambda: torch.sigmoid(logit)
        try:
            return (layer(x, "convex", None) * upstream).sum()
        finally:
            del layer.alpha

    logit = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(projected_output, (logit,))


def test_draws_are_seeded_by_step_and_follow_alpha():
    space = _space()
    a = space.build_supernet(mode="weighted", seed=11)
    b = space.build_supernet(mode="weighted", seed=11)
    sequences = []
    for step in range(20):
        a.set_step(step)
        b.set_step(step)
        draws = a.draw_ops()
        assert draws == b.draw_ops()
        sequences.append(tuple(draws))
    assert len(set(sequences)) > 1
    a.set_step(4)
    assert tuple(a.draw_ops()) == sequences[4]  # resuming at a step repeats its draws

    with torch.no_grad():
        a.layers[0].alpha_logit.fill_(float(np.log(0.8 / 0.2)))  # α = 0.8
    freq = []
    for step in range(2000):
        a.set_step(step)
        freq.append(a.draw_ops()[0])
    assert abs(np.mean(freq) - 0.8) < 0.03
    a.set_mode("uniform")
    freq = [a.set_step(s) or a.draw_ops()[0] for s in range(2000)]
    assert abs(np.mean(freq) - 0.5) < 0.03


def test_uniform_mode_leaves_alpha_untrained_and_groups_are_separate():
    net = _space().build_supernet(mode="uniform", seed=0).train()
    net(_images()).sum().backward()
    assert all(p.grad is None for p in net.alpha_parameters())
    alphas, weights = net.alpha_parameters(), net.weight_parameters()
    assert len(alphas) == 3
    assert {id(p) for p in alphas}.isdisjoint(id(p) for p in weights)
    assert len(alphas) + len(weights) == len(list(net.parameters()))
    net.set_mode("weighted")
    net(_images()).sum().backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in net.alpha_parameters())


def test_derive_arch_takes_conv_where_alpha_above_half():
    net = _space().build_supernet(mode="weighted")
    net.set_widths(expand_ratio=[2, 4, 2], num_heads=[1, 2, 2], mlp_ratio=[2.0, 2.0, 4.0])
    with torch.no_grad():
        for p, logit in zip(net.alpha_parameters(), (0.5, -0.5, 0.0)):
            p.fill_(logit)
    assert net.alpha_values()[2] == 0.5
    assert net.derive_arch() == {"layers": [
        {"op": "conv", "expand_ratio": 2},
        {"op": "attn", "num_heads": 2, "mlp_ratio": 2.0},
        {"op": "attn", "num_heads": 2, "mlp_ratio": 4.0}]}
    with pytest.raises(ArchError) as info:
        net.set_widths(num_heads=[1, 3, 1])
    assert info.value.field == "num_heads[1]"
    with pytest.raises(ConfigError, match="weighted"):
        net.set_mode("softmax")


def test_export_after_training_steps_equals_supernet_in_arch_mode():
    # untrained-statistics exports, exact params/FLOPs and the spec rebuild of every arch kind:
    # tests/test_space_contract.py; here the BN statistics come from training-mode forwards
    torch.manual_seed(0)
    space = _space()
    net = _perturbed(space.build_supernet()).train()
    rng = np.random.default_rng(0)
    for _ in range(3):  # make the BN running statistics non-trivial
        net.activate(space.sample(rng))
        with torch.no_grad():
            net(_images(n=4, seed=5))
    net.eval()
    x = _images(n=3, seed=6)
    for arch in [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(4)]:
        net.activate(arch)
        model = net.export(arch).eval()
        assert isinstance(model, HybridNet)
        with torch.no_grad():
            assert (model(x) - net(x)).abs().max().item() < 1e-5, arch


def test_sliced_batch_norm_updates_only_the_active_channels():
    space = _space()
    net = space.build_supernet().train()
    arch = {"layers": [{"op": "conv", "expand_ratio": 2}] * 3}
    net.activate(arch)
    bn = net.layers[0].conv.expand.bn
    before = bn.running_mean.clone()
    net(_images())
    changed = (bn.running_mean != before)
    assert changed[:32].all() and not changed[32:].any()  # 16 channels x expand 2


def test_validate_names_the_bad_field():
    space = _space()
    good = {"layers": [{"op": "conv", "expand_ratio": 2},
                       {"op": "attn", "num_heads": 2, "mlp_ratio": 4},
                       {"op": "conv", "expand_ratio": 4}]}
    assert space.validate(good)["layers"][1]["mlp_ratio"] == 4.0
    layers = good["layers"]
    cases = [
        ({"layers": layers[:2]}, "layers"),
        ({"layers": [{"op": "pool"}] + layers[1:]}, "layers[0].op"),
        ({"layers": [{"op": "conv", "expand_ratio": 3}] + layers[1:]}, "layers[0].expand_ratio"),
        ({"layers": [layers[0], {"op": "attn", "num_heads": 2}, layers[2]]}, "layers[1].mlp_ratio"),
        ({"layers": [{"op": "conv", "expand_ratio": 2, "num_heads": 1}] + layers[1:]},
         "layers[0].num_heads"),
        ({**good, "depth": 3}, "depth"),
    ]
    for arch, field in cases:
        with pytest.raises(ArchError) as info:
            space.validate(arch)
        assert info.value.field == field


def test_decisions_of_the_op_not_chosen_are_switched_off():
    # operator validity and the spec round trip of every space: tests/test_space_contract.py
    space = _space()
    arch = space.sample(np.random.default_rng(0))
    decisions = space.to_decisions(arch)
    for i, layer in enumerate(arch["layers"]):
        assert (decisions[f"l{i}.expand_ratio"] is None) == (layer["op"] == "attn")
    assert create_space("hybrid_cifar").feature_size == 16
    model = space.build_supernet(num_classes=7).export(arch)
    assert sum(p.numel() for p in model.parameters()) == space.cost(arch, num_classes=7)["params"]


def test_rebuild_from_build_options_and_state_dict_keeps_alpha_and_mode():
    space = _space()
    net = space.build_supernet(mode="weighted", seed=7)
    with torch.no_grad():
        net.alpha_parameters()[1].fill_(1.5)
    again = space.build_supernet(**net.build_options)
    again.load_state_dict(net.state_dict())
    assert again.mode == "weighted" and again.alpha_values() == net.alpha_values()
    net.set_step(3)
    again.set_step(3)
    assert net.draw_ops() == again.draw_ops()


def test_cumulative_bn_recalibration_matches_the_exported_model():
    """momentum=None (cumulative average, as BN recalibration uses) on the sliced BN gives the
    statistics nn.BatchNorm2d computes on the exported model over the same batches."""
    torch.manual_seed(0)
    space = _space()
    net = _perturbed(space.build_supernet())
    arch = space.validate({"layers": [{"op": "conv", "expand_ratio": 2},
                                      {"op": "attn", "num_heads": 1, "mlp_ratio": 2.0},
                                      {"op": "conv", "expand_ratio": 4}]})
    net.activate(arch)
    model = net.export(arch)
    for m in (net, model):
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.reset_running_stats()
            bn.momentum = None
        m.train()
        with torch.no_grad():
            for seed in range(3):
                m(_images(n=4, seed=10 + seed))
        m.eval()
    bn_net, bn_model = net.layers[0].conv.expand.bn, model.layers[0].expand.bn
    assert torch.allclose(bn_net.running_mean[:32], bn_model.running_mean, atol=1e-6)
    assert torch.allclose(bn_net.running_var[:32], bn_model.running_var, atol=1e-5)
    x = _images(n=3, seed=20)
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max().item() < 1e-5
