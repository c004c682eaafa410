"""The one resolve_device and the one top-1 loop (raynas.device, raynas.accuracy)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.accuracy import top1
from raynas.device import bf16_autocast, resolve_device
from raynas.errors import ConfigError


def test_resolve_device_auto_explicit_and_refusals():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU; use 'cpu' or 'auto'"):
            resolve_device("cuda:0")
    assert isinstance(bf16_autocast(True, torch.device("cpu")), type(bf16_autocast(False, torch.device("cpu"))))


def test_top1_counts_hits_and_loss_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    batches = [(torch.randn(n, 5), torch.randint(0, 3, (n,))) for n in (7, 4, 9)]
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    model.train()
    result = top1(model, iter(batches), with_loss=True)
    assert model.training  # evaluated in eval mode (BN running stats), then given back
    assert result.count == 20
    assert result.accuracy == 100.0 * int((logits.argmax(1) == labels).sum()) / 20
    assert result.loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    assert math.isnan(top1(model, batches).loss)
    assert top1(model, []).accuracy == 0.0 and top1(model, []).count == 0
