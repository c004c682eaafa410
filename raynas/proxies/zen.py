"""Zen-score (Lin et al., ICCV 2021) as idstcv/ZenNAS and NASLib compute it."""
from __future__ import annotations

import math
from typing import Any, List

import torch
import torch.nn as nn

from raynas.errors import ConfigError
from raynas.proxies.registry import ProxyContext, register_proxy


def gaussian_init_(model: nn.Module, generator: torch.Generator) -> None:
    """ZenNAS's ``network_weight_gaussian_init``: Conv2d/Linear weights ~ N(0, 1), their biases 0;
    BatchNorm2d/GroupNorm weight 1, bias 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, 1.0, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()


def pre_gap_features(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The feature map entering the model's last global average pooling (``nn.AdaptiveAvgPool2d``,
    read with a hook as NASLib does), else ``model.forward_features(inputs)``."""
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if pools:
        seen: List[torch.Tensor] = []

        def grab(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            seen.append(args[0])

        handle = pools[-1].register_forward_hook(grab)
        try:
            model(inputs)
        finally:
            handle.remove()
        if seen:
            return seen[-1]
    forward_features = getattr(model, "forward_features", None)
    if callable(forward_features):
        return forward_features(inputs)
    raise ConfigError("zen needs the features before global pooling: the model has no "
                      "nn.AdaptiveAvgPool2d that runs in forward and no forward_features()")


@register_proxy("zen", data_free=True, needs_labels=False,
                reference="Lin et al., Zen-NAS, ICCV 2021 (idstcv/ZenNAS compute_zen_score.py; "
                          "NASLib measures/zen.py)")
def zen(ctx: ProxyContext) -> float:
    """Zen-score: re-initialise Conv2d/Linear weights ~ N(0,1) (BN affine 1/0), draw x, ε ~ N(0,1)
    of the batch's shape, f = pre-global-pooling features (train mode); score =
    log(mean_n Σ_chw |f(x) - f(x + 0.01 ε)|) + Σ_BN2d log sqrt(mean(running_var)), the running
    variances as left by those two forwards. Averaged over ``zen_repeat`` draws (default 1).
    Data-free; randomness from ``zen_seed`` (default 0)."""
    model = ctx.model
    model.train()
    gamma = float(ctx.option("zen_mixup_gamma", 1e-2))
    repeat = int(ctx.option("zen_repeat", 1))
    gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.option("zen_seed", 0)))
    shape = tuple(ctx.inputs.shape)
    dtype = ctx.inputs.dtype if ctx.inputs.is_floating_point() else torch.float32
    scores = []
    with torch.no_grad():
        for _ in range(repeat):
            gaussian_init_(model, gen)
            x = torch.randn(shape, generator=gen, device=ctx.device, dtype=dtype)
            eps = torch.randn(shape, generator=gen, device=ctx.device, dtype=dtype)
            out = pre_gap_features(model, x)
            out_mixed = pre_gap_features(model, x + gamma * eps)
            diff = (out - out_mixed).abs().flatten(1).sum(1).mean()
            variances = [m.running_var.mean() for m in model.modules()
                         if isinstance(m, nn.BatchNorm2d) and m.running_var is not None]
            log_bn = (torch.stack(variances).sqrt().log().sum().item() if variances else 0.0)
            d = diff.item()
            scores.append(math.log(d) + log_bn if d > 0 else float("nan"))
    return float(sum(scores) / len(scores))

