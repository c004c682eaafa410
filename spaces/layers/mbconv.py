"""The static inverted-residual (MBConv) block and its parts: what an exported OFA or hybrid
subnet's convolutions are made of.

A block is described by a small frozen geometry (:class:`BlockGeometry`, also the block's
config: ``MBConv.from_config(block.config)`` rebuilds it). The same geometry builds the module,
gives the analytic cost and names the latency-table entry, so the three can never disagree. The
modules use only plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` layers, so an exported model needs
nothing from raynas to run.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNEL_DIVISOR = 8
SE_REDUCTION = 4


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR, min_value: Optional[int] = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without losing more than 10% (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def expanded_channels(in_channels: int, expand_ratio: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Middle width of an inverted bottleneck, as OFA computes it (``divisor`` 1: exactly
    ``in_channels * expand_ratio`` for an integer ratio)."""
    return make_divisible(round(in_channels * expand_ratio), divisor)


def se_channels(channels: int) -> int:
    """Hidden width of a squeeze-excite module on ``channels`` channels."""
    return make_divisible(channels // SE_REDUCTION, CHANNEL_DIVISOR)


def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv (also the OFA latency-table rule)."""
    return (size - 1) // stride + 1


ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "hswish": nn.Hardswish,
    "silu": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


# ------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class BlockGeometry:
    """Shape of one inverted-residual (MBConv) block."""

    in_channels: int
    out_channels: int
    mid_channels: int
    kernel: int
    stride: int
    activation: str
    use_se: bool
    has_expand: bool = True

    @property
    def use_shortcut(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def se_channels(self) -> int:
        return se_channels(self.mid_channels)

    def out_size(self, size: int) -> int:
        return conv_out_size(size, self.stride)

    def cost(self, size: int) -> Tuple[int, int]:
        """(params, MACs) of the block on a ``size`` x ``size`` input; BN affine params included."""
        out = self.out_size(size)
        mid, params, macs = self.mid_channels, 0, 0
        if self.has_expand:
            params += self.in_channels * mid + 2 * mid
            macs += size * size * self.in_channels * mid
        params += mid * self.kernel * self.kernel + 2 * mid
        macs += out * out * mid * self.kernel * self.kernel
        if self.use_se:
            hidden = self.se_channels
            params += 2 * mid * hidden + hidden + mid
            macs += 2 * mid * hidden
        params += mid * self.out_channels + 2 * self.out_channels
        macs += out * out * mid * self.out_channels
        return params, macs

    def lut_key(self, size: int) -> str:
        """The block's key in OFA's MobileNetV3 latency lookup tables."""
        out = self.out_size(size)
        return (f"expanded_conv-input:{size}x{size}x{self.in_channels}"
                f"-output:{out}x{out}x{self.out_channels}-expand:{self.mid_channels}"
                f"-kernel:{self.kernel}-stride:{self.stride}-idskip:{int(self.use_shortcut)}"
                f"-se:{int(self.use_se)}-hs:{int(self.activation == 'hswish')}")


# -------------------------------------------------------------------------------------- modules
def conv_bn_act(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                activation: Optional[str] = None, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN (+ activation), the unit of every MobileNetV3 layer."""
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2,
                               groups=groups, bias=False)
    layers["bn"] = nn.BatchNorm2d(out_channels)
    if activation is not None:
        layers["act"] = make_activation(activation)
    return nn.Sequential(layers)


def squeeze_excite_forward(x: torch.Tensor, reduce_w: torch.Tensor, reduce_b: torch.Tensor,
                           expand_w: torch.Tensor, expand_b: torch.Tensor) -> torch.Tensor:
    """x * h_sigmoid(expand(relu(reduce(mean(x))))) -- shared by the static and elastic SE."""
    s = x.mean((2, 3), keepdim=True)
    s = F.relu(F.conv2d(s, reduce_w, reduce_b), inplace=True)
    return x * F.hardsigmoid(F.conv2d(s, expand_w, expand_b))


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite: 1x1 convs with bias, ReLU, hard sigmoid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.config = {"channels": int(channels), "hidden": int(hidden)}
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite_forward(x, self.reduce.weight, self.reduce.bias,
                                      self.expand.weight, self.expand.bias)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ identity)."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "MBConv":
        return cls(BlockGeometry(**config))

    @property
    def config(self) -> Dict[str, Any]:
        return asdict(self.geometry)

    def __init__(self, geometry: BlockGeometry) -> None:
        super().__init__()
        g = self.geometry = geometry
        self.expand = (conv_bn_act(g.in_channels, g.mid_channels, 1, 1, g.activation)
                       if g.has_expand else None)
        self.depthwise = conv_bn_act(g.mid_channels, g.mid_channels, g.kernel, g.stride,
                                     g.activation, groups=g.mid_channels)
        self.se = SqueezeExcite(g.mid_channels, g.se_channels) if g.use_se else None
        self.project = conv_bn_act(g.mid_channels, g.out_channels, 1)
        self.use_shortcut = g.use_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else self.expand(x)
        h = self.depthwise(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return h + x if self.use_shortcut else h
