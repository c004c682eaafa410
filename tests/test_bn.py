"""BN recalibration: exact cumulative statistics, restored state, elastic slices, and the
accuracy it recovers for subnets of a weight-sharing supernet."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from raynas.bn import recalibrate_bn
from raynas.data import resize, to_float
from tiny_supernet import ElasticBatchNorm2d, digits16, single_threaded, trained_supernet


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_threaded():
        yield



def _batches(seed=0):
    gen = torch.Generator().manual_seed(seed)
    # batches with different sizes, means and scales, so an EMA would differ from the average
    return [torch.randn(n, 3, 5, 5, generator=gen) * s + m
            for n, s, m in ((8, 1.0, 0.0), (5, 3.0, 2.0), (11, 0.5, -4.0), (7, 2.0, 1.0))]


def test_statistics_are_the_average_of_batch_statistics():
    bn = nn.BatchNorm2d(3, momentum=0.3)
    model = nn.Sequential(nn.Identity(), bn)
    batches = _batches()
    with torch.no_grad():
        model.train()
        model(batches[0] * 9)  # stale statistics that recalibration must discard
    used = recalibrate_bn(model, batches)
    assert used == 4
    means = torch.stack([b.double().mean(dim=(0, 2, 3)) for b in batches])
    vars_ = torch.stack([b.double().transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True)
                         for b in batches])
    assert torch.allclose(bn.running_mean.double(), means.mean(0), atol=1e-5, rtol=0)
    assert torch.allclose(bn.running_var.double(), vars_.mean(0), atol=1e-5, rtol=1e-6)
    assert int(bn.num_batches_tracked) == 4
    # not what the model's own EMA (momentum 0.3) would give
    ema = torch.zeros(3, dtype=torch.float64)
    for m in means:
        ema = 0.7 * ema + 0.3 * m
    assert not torch.allclose(ema, means.mean(0), atol=1e-2)


def test_momentum_training_flags_and_stats_are_restored():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.25), nn.ReLU(),
                          nn.BatchNorm2d(4, momentum=None), nn.Dropout(0.5))
    model.eval()
    model[4].train()  # mixed flags must come back exactly
    recalibrate_bn(model, _batches())
    assert model[1].momentum == 0.25 and model[3].momentum is None
    assert [m.training for m in model.modules()] == [False, False, False, False, False, True]

    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(model, [])

    def failing(m, batch):
        m(batch)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        recalibrate_bn(model, _batches(), forward=failing)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model[1].momentum == 0.25 and not model.training


def test_custom_forward_and_elastic_slices():
    bn = ElasticBatchNorm2d(6, momentum=0.1)
    batches = [(b, torch.zeros(len(b))) for b in _batches(1)]  # (x, y) pairs need a forward
    recalibrate_bn(bn, batches, forward=lambda m, batch: m(batch[0]))
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x, _ in batches]).mean(0)
    assert torch.allclose(bn.running_mean[:3], means, atol=1e-5)
    assert torch.equal(bn.running_mean[3:], torch.zeros(3))  # inactive channels: reset values
    assert torch.equal(bn.running_var[3:], torch.ones(3))
    assert bn.momentum == 0.1


def test_recalibration_recovers_subnet_accuracy():
    ds = digits16()
    net = trained_supernet()
    calib = to_float(ds.split("calib").images, ds.mean, ds.std)
    val = to_float(ds.split("val").images, ds.mean, ds.std)
    labels = ds.split("val").labels

    def accuracy(res):
        net.eval()
        with torch.no_grad():
            return 100.0 * (net(resize(val, res)).argmax(1) == labels).double().mean().item()

    results = {}
    for arch in (net.space.smallest(), {"w1": 8, "w2": 16, "resolution": 16}):
        res = net.input_resolution(net.activate(arch))
        before = accuracy(res)
        recalibrate_bn(net, (resize(x, res) for x in calib.split(50)))
        results[str(arch)] = (before, accuracy(res))
    # training with random widths leaves statistics that fit no subnet; recalibration fixes them
    for before, after in results.values():
        assert after > before + 10, results
