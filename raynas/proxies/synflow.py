"""SynFlow (Tanaka et al., NeurIPS 2020) as the zero-cost-nas reference computes it."""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from raynas.proxies.registry import ProxyContext, logits_of, register_proxy, scored_layers


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@register_proxy("synflow", data_free=True, needs_labels=False,
                reference="Tanaka et al., SynFlow, NeurIPS 2020; Abdelfattah et al., ICLR 2021 "
                          "(mohsaied/zero-cost-nas measures/synflow.py, bn=False)")
def synflow(ctx: ProxyContext) -> float:
    """SynFlow: Σ over Conv2d/Linear weights of |θ ⊙ ∂R/∂θ|, R = Σ logits of the network with every
    parameter and buffer replaced by its absolute value, BatchNorm layers bypassed (identity),
    in float64, on one all-ones input of the batch's sample shape. Data-free."""
    model = ctx.model
    model.train()
    model.double()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.abs_()
    # zero-cost-nas builds the network without BN for synflow ("bn=False"): BN on a single
    # all-ones sample would erase the signal, so each BN forward becomes the identity
    bypassed: List[nn.Module] = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for m in bypassed:
        m.forward = _identity  # instance attribute, deleted below
    try:
        weights = [m.weight for _, m in scored_layers(model)]
        for w in weights:
            w.requires_grad_(True)
        ones = torch.ones((1,) + tuple(ctx.inputs.shape[1:]), dtype=torch.float64, device=ctx.device)
        total = logits_of(model(ones)).sum()
        grads = torch.autograd.grad(total, weights, allow_unused=True)
        terms = [(w.detach() * g).abs().sum() for w, g in zip(weights, grads) if g is not None]
        return float(torch.stack(terms).sum().item()) if terms else 0.0
    finally:
        for m in bypassed:
            del m.forward
