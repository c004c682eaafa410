"""Zero-cost proxies: each equals a direct computation on a tiny hand-built net; the model is
left untouched; the evaluator, ranking and self-validation behave; synflow ranks NB201 archs."""
from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas import ConfigError, FunctionEvaluator, create_space
from raynas.proxies import (ProxyEvaluator, compute_proxies, compute_proxy, list_proxies, rank_correlations,
                            rank_ensemble, snip_saliency, validate_proxies)
from raynas.proxies.activation import relu_code_kernel
from spaces.nb201 import from_arch_str
from conftest import shared_data_path

ALL = ["fisher", "flops", "grad_norm", "gradsign", "grasp", "jacob_cov", "naswot", "params", "snip",
       "snip_layernorm", "synflow", "zen"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seeded(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return module


def data(n: int, d: int, classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def softmax_grad(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dlogits of mean cross-entropy."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p / len(y)


def test_registry_lists_every_proxy_and_rejects_unknown_names():
    assert list_proxies() == ALL
    with pytest.raises(ConfigError) as info:
        compute_proxy("nope", nn.Linear(2, 2), torch.randn(3, 2))
    assert "synflow" in str(info.value)
    with pytest.raises(ConfigError) as info:
        compute_proxy("snip", nn.Linear(2, 2), torch.randn(3, 2))  # a loss but no targets
    assert "loss_fn=None" in str(info.value)


def test_synflow_of_a_linear_chain_is_twice_the_path_sum():
    net = seeded(nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False)), 1)
    w1, w2 = net[0].weight.detach().double().abs().numpy(), net[2].weight.detach().double().abs().numpy()
    # BN bypassed, |W|, all-ones input: R = 1ᵀ|W2||W1|1, and each layer's Σ|θ ∂R/∂θ| equals R
    path_sum = float(np.ones(2) @ w2 @ w1 @ np.ones(4))
    assert compute_proxy("synflow", net, torch.randn(5, 4)) == pytest.approx(2 * path_sum, rel=1e-12)


def test_snip_grad_norm_and_layernorm_snip_of_a_single_layer():
    layer = seeded(nn.Linear(5, 3), 2)
    x, y = data(6, 5, 3)
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    xn = x.double().numpy()
    dw = softmax_grad(xn @ w.T + b, y.numpy()).T @ xn
    scores = compute_proxies(["snip", "grad_norm", "snip_layernorm"], layer, (x, y))
    assert scores["snip"] == pytest.approx(np.abs(w * dw).sum(), rel=1e-5)
    assert scores["grad_norm"] == pytest.approx(np.sqrt((dw ** 2).sum()), rel=1e-5)
    assert scores["snip_layernorm"] == pytest.approx(np.abs(w * dw).sum() / (np.abs(w).sum() * np.abs(dw).sum()), rel=1e-5)
    # the per-weight maps sum to the scalar proxies
    maps = snip_saliency(layer, (x, y))
    assert list(maps) == ["weight"] and maps["weight"].shape == (3, 5)
    assert float(maps["weight"].sum()) == pytest.approx(scores["snip"], rel=1e-5)
    normed = snip_saliency(layer, (x, y), layer_norm=True)
    assert float(normed["weight"].sum()) == pytest.approx(scores["snip_layernorm"], rel=1e-5)
    # any named parameters (e.g. a ViT's qkv / fc1 weights) can be scored, biases included
    bias = snip_saliency(layer, (x, y), param_names=["bias"])["bias"]
    assert np.allclose(bias.numpy(), np.abs(b * softmax_grad(xn @ w.T + b, y.numpy()).sum(0)), rtol=1e-5)
    with pytest.raises(ConfigError):
        snip_saliency(layer, (x, y), param_names=["blocks.0.fc1.weight"])


def test_grad_norm_and_snip_sum_over_layers_of_a_two_layer_net():
    net = seeded(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), 3)
    x, y = data(8, 4, 3)
    w1, b1 = net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy()
    w2, b2 = net[2].weight.detach().double().numpy(), net[2].bias.detach().double().numpy()
    xn = x.double().numpy()
    h = xn @ w1.T + b1
    a = np.maximum(h, 0)
    g_out = softmax_grad(a @ w2.T + b2, y.numpy())
    dw2 = g_out.T @ a
    dw1 = ((g_out @ w2) * (h > 0)).T @ xn
    scores = compute_proxies(["snip", "grad_norm"], net, (x, y))
    assert scores["grad_norm"] == pytest.approx(np.linalg.norm(dw1) + np.linalg.norm(dw2), rel=1e-5)
    assert scores["snip"] == pytest.approx(np.abs(w1 * dw1).sum() + np.abs(w2 * dw2).sum(), rel=1e-5)


def test_naswot_is_the_logdet_of_the_binary_code_kernel_of_a_relu_layer():
    net = seeded(nn.Sequential(nn.Linear(5, 7), nn.ReLU()), 4)
    x = data(4, 5, 2)[0]
    h = (x.double() @ net[0].weight.detach().double().T + net[0].bias.detach().double()).numpy()
    c = (h > 0).astype(np.float64)
    kernel = c @ c.T + (1 - c) @ (1 - c).T  # matching units = 7 - Hamming distance
    assert np.allclose(relu_code_kernel(net, x).numpy(), kernel)
    assert np.allclose(np.diag(kernel), 7)
    sign, logdet = np.linalg.slogdet(kernel)
    assert sign > 0
    assert compute_proxy("naswot", net, x, loss_fn=None) == pytest.approx(logdet, rel=1e-9)


def test_gradsign_on_two_samples_sums_agreeing_gradient_signs():
    layer = seeded(nn.Linear(3, 2), 5)
    x, y = data(2, 3, 2, seed=1)
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    signs = []
    for i in range(2):
        xi = x[i:i + 1].double().numpy()
        signs.append(np.sign(softmax_grad(xi @ w.T + b, y[i:i + 1].numpy()).T @ xi))
    expected = np.abs(signs[0] + signs[1]).sum()  # 2 where the samples agree, 0 where they conflict
    assert compute_proxy("gradsign", layer, (x, y)) == expected
    assert compute_proxy("gradsign", layer, (x, y), gradsign_method="loop") == expected


def test_gradsign_vmap_matches_one_backward_per_sample_with_batchnorm():
    net = seeded(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), 6)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 6, 6, generator=gen), torch.randint(0, 3, (6,), generator=gen)
    assert compute_proxy("gradsign", net, (x, y)) == compute_proxy("gradsign", net, (x, y), gradsign_method="loop")
    nb201 = create_space("nb201", channels=4, cells_per_stage=1).build_static(
        from_arch_str("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"))
    x = torch.randn(4, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (4,), generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent fallback to the loop
        assert compute_proxy("gradsign", nb201, (x, y)) == compute_proxy("gradsign", nb201, (x, y),
                                                                         gradsign_method="loop")


def test_fisher_of_a_tiny_net_matches_the_channel_formula():
    net = seeded(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), 7)
    x, y = data(5, 4, 2)
    # direct: activations of each linear layer and dL/d(activation), without any hooks
    a1 = net[0](x)
    a2 = net[2](torch.relu(a1))
    g1, g2 = torch.autograd.grad(F.cross_entropy(a2, y), [a1, a2])
    f1 = 0.5 * (a1 * g1).pow(2).mean(0)
    f2 = 0.5 * (a2 * g2).pow(2).mean(0)
    expected = float(f1.sum().detach()) * 4 + float(f2.sum().detach()) * 3  # × weights per output channel
    assert compute_proxy("fisher", net, (x, y)) == pytest.approx(expected, rel=1e-5)


def test_grasp_is_minus_theta_times_hessian_gradient_product():
    net = seeded(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), 8)
    x, y = data(5, 3, 2)
    w1, w2 = net[0].weight, net[2].weight
    n1 = w1.numel()

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        v1, v2 = flat[:n1].view_as(w1), flat[n1:].view_as(w2)
        h = torch.tanh(F.linear(x, v1, net[0].bias))
        return F.cross_entropy(F.linear(h, v2, net[2].bias), y)

    flat = torch.cat([w1.detach().flatten(), w2.detach().flatten()]).double().requires_grad_(True)
    net.double()
    x = x.double()
    hess = torch.autograd.functional.hessian(loss_of, flat)
    (g,) = torch.autograd.grad(loss_of(flat), flat)
    expected = float(-(flat.detach() * (hess @ g)).sum())
    assert compute_proxy("grasp", net, (x, y)) == pytest.approx(expected, rel=1e-6)


def test_jacob_cov_uses_the_eigenvalues_of_the_jacobian_correlations():
    net = seeded(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), 9).double()
    x = data(4, 6, 3)[0].double()
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2 = net[2].weight.detach().numpy()
    xn = x.numpy()
    mask = (xn @ w1.T + b1) > 0
    jac = np.stack([(w2.sum(0) * mask[i]) @ w1 for i in range(4)])  # ∂(Σ logits)/∂x per sample
    eig = np.linalg.eigvalsh(np.corrcoef(jac))
    expected = -np.sum(np.log(eig + 1e-5) + 1.0 / (eig + 1e-5))
    assert compute_proxy("jacob_cov", net, x, loss_fn=None) == pytest.approx(expected, rel=1e-9)


def test_zen_score_by_hand_on_a_conv_bn_relu_net():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    batch = torch.zeros(5, 3, 6, 6)
    # same draws as the proxy: conv weight, linear weight, then x and ε, from one generator
    gen = torch.Generator().manual_seed(3)
    wc = torch.empty(4, 3, 3, 3).normal_(generator=gen)
    torch.empty(2, 4).normal_(generator=gen)
    x = torch.randn(5, 3, 6, 6, generator=gen)
    eps = torch.randn(5, 3, 6, 6, generator=gen)

    def features(inp):
        z = F.conv2d(inp, wc, padding=1)
        mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)
        return torch.relu((z - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-5)), z

    f1, z1 = features(x)
    f2, z2 = features(x + 0.01 * eps)
    running_var = torch.ones(4)
    for z in (z1, z2):  # BN momentum 0.1, unbiased batch variance
        running_var = 0.9 * running_var + 0.1 * z.var((0, 2, 3), unbiased=True)
    expected = math.log(float((f1 - f2).abs().flatten(1).sum(1).mean())) + math.log(math.sqrt(float(running_var.mean())))
    assert compute_proxy("zen", net, batch, loss_fn=None, zen_seed=3) == pytest.approx(expected, rel=1e-4)


def test_params_and_flops_of_a_small_conv_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 10))
    scores = compute_proxies(["params", "flops"], net, torch.randn(4, 3, 16, 16))
    assert scores["params"] == 3 * 8 * 9 + 8 + 8 * 10 + 10
    assert scores["flops"] == 2 * (3 * 8 * 9 * 16 * 16 + 8 * 10)


def test_proxies_leave_weights_buffers_grads_and_modes_unchanged():
    space = create_space("nb201", channels=4, cells_per_stage=1)
    arch = from_arch_str("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|")
    torch.manual_seed(0)
    net = space.build_static(arch)
    net(torch.randn(8, 3, 32, 32))  # non-trivial BN running statistics
    net.eval()
    net.cells[1].train()  # a mixed mode must come back as it was
    net.classifier.weight.grad = torch.full_like(net.classifier.weight, 0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    gen = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    first = compute_proxies(ALL, net, batch)
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]), k
    assert [m.training for m in net.modules()] == modes
    assert torch.equal(net.classifier.weight.grad, torch.full_like(net.classifier.weight, 0.5))
    assert all(p.grad is None for n, p in net.named_parameters() if n != "classifier.weight")
    assert all("forward" not in vars(m) for m in net.modules())  # synflow's BN bypass is undone
    # each proxy starts from the model as given: another order, or each proxy alone (no shared
    # passes), gives the same values
    second = compute_proxies(list(reversed(ALL)), net, batch)
    assert all(math.isfinite(v) for v in first.values())
    assert first == second
    for name in ALL:
        assert compute_proxy(name, net, batch) == pytest.approx(first[name], rel=1e-6, abs=1e-12), name


def test_data_free_objective_needs_no_labels():
    net = seeded(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), 10)
    x = data(6, 4, 2)[0]
    scores = compute_proxies(["snip", "grad_norm", "snip_layernorm", "gradsign", "grasp", "fisher"], net, x,
                             loss_fn=None)
    (g1, g2) = torch.autograd.grad(net(x).sum(), [net[0].weight, net[2].weight])
    assert scores["snip"] == pytest.approx(float((net[0].weight * g1).abs().sum() + (net[2].weight * g2).abs().sum()),
                                           rel=1e-5)


def test_rank_helpers_treat_nan_as_lowest():
    assert rank_correlations([1, 2, 3, 4], [10, 20, 30, 40])["spearman"] == pytest.approx(1.0)
    assert rank_correlations([float("nan"), 2, 3, 4], [10, 20, 30, 40])["spearman"] == pytest.approx(1.0)
    assert rank_correlations([4, 3, 2, 1], [10, 20, 30, 40])["kendall"] == pytest.approx(-1.0)
    combined = rank_ensemble({"a": [1, 2, 3], "b": [3, 2, 1], "c": [1, 2, 3]})
    assert np.allclose(combined, [1 / 3, 0.5, 2 / 3])


def test_proxy_evaluator_is_seeded_picklable_and_order_independent():
    space = create_space("nb201", channels=4, cells_per_stage=1)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(3)]
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    ev = ProxyEvaluator(space, ["snip", "naswot", "params"], batch=batch, seed=7)
    def untimed(results):   # each arch's own evaluation time is a measurement, not a score
        return [{k: v for k, v in m.items() if k != "eval_seconds"} for m in results]

    first = untimed(ev.evaluate(archs))
    clone = pickle.loads(pickle.dumps(ev))
    assert untimed(clone.evaluate(list(reversed(archs)))) == list(reversed(first))
    assert ProxyEvaluator(space, ["snip"], batch=batch, seed=8).evaluate(archs[:1])[0]["snip"] != first[0]["snip"]
    assert set(ev.timings) >= {"build", "snip", "naswot", "params"}
    # params / flops from the space's analytic cost equal the counted ones
    counted = untimed(ProxyEvaluator(space, ["params", "flops"], batch=batch, analytic_cost=False).evaluate(archs))
    assert untimed(ProxyEvaluator(space, ["params", "flops"], batch=batch).evaluate(archs)) == counted
    free = ProxyEvaluator(space, ["synflow", "zen", "snip_layernorm"], data_free=True, batch_size=4)
    assert all(math.isfinite(v) for v in free.evaluate(archs[:1])[0].values())
    with pytest.raises(ConfigError):
        ProxyEvaluator(space, ["snip"])  # neither a batch nor data_free
    with pytest.raises(ConfigError):
        ProxyEvaluator(space, ["no_such_proxy"], data_free=True)


def test_validate_proxies_recommends_or_falls_back():
    space = create_space("nb201", channels=4, cells_per_stage=1)
    rng = np.random.default_rng(2)
    archs = list({tuple(a["edges"]): a for a in (space.sample(rng) for _ in range(12))}.values())
    params = FunctionEvaluator(lambda a: {"accuracy": space.cost(a)["params"]})
    report = validate_proxies(space, params, archs, proxies=["synflow"], threshold=0.3, data_free=True,
                              batch_size=2)
    assert report.recommended == "synflow" and not report.fallback and report.passed == ["synflow"]
    assert report.correlations["params"]["spearman"] == pytest.approx(1.0)
    inverted = FunctionEvaluator(lambda a: {"accuracy": -space.cost(a)["params"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = validate_proxies(space, inverted, archs, proxies=["synflow"], threshold=0.3, data_free=True,
                                  batch_size=2)
    warned = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert warned == report.messages and len(warned) == 3
    assert "'synflow'" in warned[0] and "falling back" in warned[1] and "weight-inherited" in warned[2]
    assert report.fallback and report.failed == ["synflow"] and report.recommended in ("params", "flops")
    assert "below threshold" in report.summary()
    with pytest.raises(ConfigError):
        validate_proxies(space, params, archs[:2], proxies=["synflow"], data_free=True)


def test_synflow_ranks_nb201_archs_like_their_accuracy():
    table = pd.read_csv(shared_data_path("nb201/nb201_cifar10.csv"))
    rows = np.random.default_rng(0).choice(len(table), size=30, replace=False)
    ev = ProxyEvaluator("nb201", ["synflow"], data_free=True, batch_size=1)
    scores = [ev.score(from_arch_str(table["arch_str"].iloc[r]))["synflow"] for r in rows]
    rho = rank_correlations(scores, table["c10_test_200ep"].iloc[rows].to_numpy())["spearman"]
    assert rho > 0.3
