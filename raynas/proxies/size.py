"""Size proxies: parameter count and FLOPs, the baselines every proxy must beat."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from raynas.proxies.registry import ProxyContext, register_proxy


@register_proxy("params", data_free=True, needs_labels=False, reference="parameter count")
def params(ctx: ProxyContext) -> float:
    """params: the number of parameters of the model (every nn.Parameter, counted once)."""
    return float(sum(p.numel() for p in ctx.model.parameters()))


@register_proxy("flops", data_free=True, needs_labels=False,
                reference="torch.utils.flop_counter.FlopCounterMode (conv/linear/matmul, 2 per MAC)")
def flops(ctx: ProxyContext) -> float:
    """flops: FLOPs of one forward of a single sample of the batch's shape, as FlopCounterMode
    counts them (convolutions, linear layers and matmuls; 2 FLOPs per multiply-accumulate)."""
    model = ctx.model
    model.eval()  # BN on batch statistics is not counted either way; eval keeps its buffers still
    sample = ctx.inputs[:1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample)
    return float(counter.get_total_flops())
