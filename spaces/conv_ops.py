"""Convolution ops of the hybrid space: an elastic MBConv (inverted residual) and its static form.

The elastic block keeps the largest expansion; a smaller expand ratio uses the leading hidden
channels of every weight and BatchNorm (running statistics included). Both forms share
parameter names, so export copies by name.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from spaces.slicing import leading


def sliced_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, training: bool) -> torch.Tensor:
    """BatchNorm over the first ``x.shape[1]`` channels of ``bn``; in training the running
    statistics of exactly those channels are updated in place (their views are passed).

    Momentum follows ``nn.BatchNorm2d``: ``momentum=None`` means a cumulative average over
    ``num_batches_tracked`` batches (what BN recalibration uses)."""
    c = x.shape[1]
    factor = 0.0
    if training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, leading(bn.running_mean, c), leading(bn.running_var, c),
                        leading(bn.weight, c), leading(bn.bias, c), training, factor, bn.eps)


class MBConv(nn.Module):
    """Static inverted residual: 1x1 expand, BN, SiLU, kxk depthwise, BN, SiLU, 1x1 project, BN,
    plus the identity shortcut (input and output have the same shape)."""

    def __init__(self, channels: int, expand_ratio: int, kernel_size: int = 3) -> None:
        super().__init__()
        hidden = channels * expand_ratio
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden,
                            bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.bn1(self.expand(x)))
        h = F.silu(self.bn2(self.dw(h)))
        return x + self.bn3(self.project(h))


class ElasticMBConv(MBConv):
    """:class:`MBConv` at its largest expand ratio; ``expand_ratio`` selects the hidden width."""

    def __init__(self, channels: int, max_expand_ratio: int, kernel_size: int = 3) -> None:
        super().__init__(channels, max_expand_ratio, kernel_size)
        self.kernel_size = kernel_size
        self.expand_ratio = max_expand_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x.shape[1] * self.expand_ratio
        h = F.conv2d(x, leading(self.expand.weight, hidden))
        h = F.silu(sliced_batch_norm(self.bn1, h, self.training))
        h = F.conv2d(h, leading(self.dw.weight, hidden), padding=self.kernel_size // 2,
                     groups=hidden)
        h = F.silu(sliced_batch_norm(self.bn2, h, self.training))
        h = F.conv2d(h, leading(self.project.weight, x.shape[1], hidden))
        return x + sliced_batch_norm(self.bn3, h, self.training)

    @torch.no_grad()
    def subnet_state_dict(self, expand_ratio: int) -> Dict[str, torch.Tensor]:
        """Copies of the leading slices a static :class:`MBConv` with ``expand_ratio`` holds."""
        hidden = self.project.weight.shape[0] * int(expand_ratio)
        out: Dict[str, torch.Tensor] = {
            "expand.weight": self.expand.weight[:hidden],
            "dw.weight": self.dw.weight[:hidden],
            "project.weight": self.project.weight[:, :hidden],
        }
        for name, bn, width in (("bn1", self.bn1, hidden), ("bn2", self.bn2, hidden),
                                ("bn3", self.bn3, None)):
            for key in ("weight", "bias", "running_mean", "running_var"):
                value = getattr(bn, key)
                out[f"{name}.{key}"] = value if width is None else value[:width]
            out[f"{name}.num_batches_tracked"] = bn.num_batches_tracked
        return {k: v.clone() for k, v in out.items()}


def mbconv_cost(channels: int, expand_ratio: int, kernel_size: int, pixels: int) -> Dict[str, int]:
    """Parameters (BN affine included, running stats not) and MACs of one :class:`MBConv`."""
    hidden = channels * expand_ratio
    params = (channels * hidden + 2 * hidden + hidden * kernel_size ** 2 + 2 * hidden
              + hidden * channels + 2 * channels)
    macs = pixels * (channels * hidden + hidden * kernel_size ** 2 + hidden * channels)
    return {"params": params, "macs": macs}
