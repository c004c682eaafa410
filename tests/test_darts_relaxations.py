"""GDAS' hard Gumbel relaxation, the argmax (derived-cell) relaxation, per-epoch supernet
evaluation and images resized once for CPU-sized searches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raynas import ConfigError, create_space
from raynas.data import load_dataset
from raynas.data.transforms import resize_uint8
from raynas.differentiable.config import DartsSearchConfig
from raynas.differentiable.mixed import gumbel_hard
from raynas.differentiable.search import DartsSearch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _supernet(seed=0, channels=4):
    torch.manual_seed(seed)
    net = create_space("nb201").build_search_network(channels=channels, cells_per_stage=1, resolution=8)
    net.init_alphas(torch.Generator().manual_seed(seed), scale=1.0)
    return net.double()


def test_gumbel_argmax_follows_softmax_alpha_and_is_seeded():
    """Gumbel-max: argmax(α + g) is distributed as softmax(α) at every τ; the straight-through
    weights are one-hot in value and carry softmax((α + g)/τ)'s gradient."""
    alpha = torch.tensor([[1.0, 0.0, -1.0, 0.5, 0.2]], dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(5)
    for _ in range(4000):
        hard, index = gumbel_hard(alpha, 5.0, gen)
        counts[int(index)] += 1
    expected = torch.softmax(alpha.detach(), -1).numpy()[0]
    assert np.abs(counts / counts.sum() - expected).max() < 0.03
    hard, index = gumbel_hard(alpha, 1.0, torch.Generator().manual_seed(7))
    again, index2 = gumbel_hard(alpha, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(hard, again) and torch.equal(index, index2)
    assert torch.allclose(hard.detach(), torch.nn.functional.one_hot(index, 5).double(), atol=1e-12)
    hard[0, 1].backward()
    assert alpha.grad.abs().sum() > 0


def test_hard_mixed_op_runs_the_chosen_op_and_passes_gradients_to_every_weight():
    net = _supernet()
    mixed = next(net.mixed_ops())
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    out = mixed(x, w, index=2)
    torch.testing.assert_close(out, mixed.ops["nor_conv_1x1"](x))
    out.sum().backward()
    # GDAS' form: an op that did not run receives the upstream gradient summed (its weight is
    # added to every element); the chosen one <grad, op(x)>
    assert torch.allclose(w.grad[[0, 1, 3, 4]], torch.full((4,), float(out.numel()), dtype=torch.float64))
    torch.testing.assert_close(w.grad[2], mixed.ops["nor_conv_1x1"](x).sum())


def test_argmax_relaxation_is_the_zero_temperature_supernet_and_gumbel_draws_are_reproducible():
    net = _supernet(seed=2)
    net.train()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with net.relaxed("argmax"):
        discrete = net(x)
    assert net.relaxation == "softmax"
    net.temperature = 1e-6
    torch.testing.assert_close(discrete, net(x), rtol=1e-9, atol=1e-9)
    net.temperature = 1.0
    outs = []
    for _ in range(2):
        net.relaxation = "gumbel"
        net.gumbel_generator = torch.Generator().manual_seed(3)
        outs.append(net(x))
    torch.testing.assert_close(outs[0], outs[1])
    with pytest.raises(ConfigError, match="relaxation"):
        net.relaxation = "sparsemax"


def test_darts_space_supernet_refuses_hard_relaxations():
    net = create_space("darts").build_search_network(channels=2, layers=3)
    with pytest.raises(ConfigError, match="only supports the softmax relaxation"):
        net.relaxation = "gumbel"


def test_resize_uint8_is_area_averaging_and_datasets_resize_every_split():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    small = resize_uint8(images, 4)
    expected = images.double().reshape(5, 3, 4, 2, 4, 2).mean((3, 5)).round().to(torch.uint8)
    assert torch.equal(small, expected)
    data = load_dataset("digits", image_size=16, val_size=100, calib_size=50)
    half = data.resized(8)
    assert half.image_size == 8 and half.sizes == data.sizes and half.mean == data.mean
    for name in data.splits:
        assert torch.equal(half.split(name).labels, data.split(name).labels)
        assert torch.equal(half.split(name).images, resize_uint8(data.split(name).images, 8))
    assert data.resized(16) is data


def test_search_records_alphas_and_both_supernet_accuracies_each_epoch():
    base = {"space": "nb201", "data": "digits", "data_options": {"image_size": 16}, "image_size": 8,
            "supernet_options": {"channels": 4, "cells_per_stage": 1, "resolution": 8}, "epochs": 2,
            "batch_size": 32, "max_steps_per_epoch": 3, "half_size": 320, "device": "cpu", "eval_images": 96}
    search = DartsSearch(DartsSearchConfig.from_any(base, relaxation="gumbel", schedule="linear"))
    assert search.data.image_size == 8 and search.crop_padding == 1
    history = search.fit()
    assert [r["temperature"] for r in history] == pytest.approx([10.0, 0.1])
    for record in history:
        assert np.asarray(record["alphas"]["cell"]).shape == (6, 5)
        # a Gumbel search is evaluated at its argmax cell, which is what "derived" measures too
        assert record["search_val_accuracy"] == record["derived_val_accuracy"]
        assert 0 <= record["search_val_accuracy"] <= 100
    assert search.config.method == "gdas1"
    with pytest.raises(ConfigError, match="first order"):
        DartsSearchConfig.from_any(base, relaxation="gumbel", order=2)


def test_evaluation_images_are_a_mixed_sample_of_the_alpha_half():
    """The halves are stored class by class: the evaluation subset must still hold every class,
    in random order (BN without running statistics normalises each batch by itself)."""
    base = {"space": "nb201", "data": "digits", "data_options": {"image_size": 8},
            "supernet_options": {"channels": 2, "cells_per_stage": 1, "resolution": 8}, "epochs": 1,
            "batch_size": 32, "half_size": 400, "device": "cpu", "eval_images": 100}
    search = DartsSearch(DartsSearchConfig.from_any(base))
    labels = search.eval_split.labels.numpy()
    assert len(labels) == 100 and len(set(labels.tolist())) == 10
    assert np.bincount(labels[:50], minlength=10).max() < 20   # not sorted by class
    val_rows = {tuple(r) for r in search.val.images.flatten(1).tolist()}
    assert all(tuple(r) in val_rows for r in search.eval_split.images.flatten(1).tolist())
