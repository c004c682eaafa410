"""Batch-norm recalibration: exact BN statistics of the active subnet over a few batches.

Weight-sharing supernets train every BN layer under many subnets, so its running statistics fit
none of them; re-estimating them for the chosen subnet (OFA, BigNAS) is what makes
weight-inherited accuracy meaningful.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> List[_BatchNorm]:
    """Every BatchNorm (any ``_BatchNorm`` subclass) that keeps running statistics."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None]


def recalibrate_bn(model: nn.Module, batches: Iterable[Any], *,
                   forward: Optional[Callable[[nn.Module, Any], Any]] = None) -> int:
    """Reset every BN's running statistics and re-estimate them over ``batches``.

    With ``momentum=None`` BatchNorm keeps a cumulative average, so after N batches
    ``running_mean`` is exactly the mean of the N batch means and ``running_var`` the mean of the
    N unbiased batch variances (not an EMA biased toward the last batches). Elastic BN subclasses
    that normalise only an active slice of channels update only that slice; the other channels
    keep the reset values (mean 0, var 1) until an arch that uses them is recalibrated.

    ``forward(model, batch)`` runs one batch (default ``model(batch)``). Each BN's momentum and
    every module's training flag are restored afterwards; if ``batches`` is empty or ``forward``
    raises, the previous statistics are restored too. Returns the number of batches used.
    """
    layers = batchnorm_layers(model)
    momenta: Dict[_BatchNorm, Optional[float]] = {bn: bn.momentum for bn in layers}
    modes = {m: m.training for m in model.modules()}
    run = forward if forward is not None else (lambda m, batch: m(batch))
    saved = {bn: (bn.running_mean.clone(), bn.running_var.clone(),
                  None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone())
             for bn in layers}
    count = 0
    ok = False
    try:
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        with torch.no_grad():
            for batch in batches:
                run(model, batch)
                count += 1
        if count == 0:
            raise ValueError("recalibrate_bn got no batches; pass at least one batch of inputs")
        ok = True
    finally:
        if not ok:
            with torch.no_grad():
                for bn, (mean, var, tracked) in saved.items():
                    bn.running_mean.copy_(mean)
                    bn.running_var.copy_(var)
                    if tracked is not None:
                        bn.num_batches_tracked.copy_(tracked)
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for module, mode in modes.items():
            module.training = mode
    return count
