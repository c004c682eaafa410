"""Static MobileNetV3 building blocks: what an exported Once-for-All subnet is made of.

Every layer is described by a small frozen geometry (:class:`BlockGeometry`,
:class:`NetworkGeometry`). The same geometry builds the module, gives the analytic cost and
names the latency-table entry, so the three can never disagree. The modules use only plain
``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` layers, so an exported model needs nothing
from raynas to run.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

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


def expanded_channels(in_channels: int, expand_ratio: float) -> int:
    """Middle width of an inverted bottleneck, as OFA computes it."""
    return make_divisible(round(in_channels * expand_ratio), CHANNEL_DIVISOR)


def se_channels(channels: int) -> int:
    """Hidden width of a squeeze-excite module on ``channels`` channels."""
    return make_divisible(channels // SE_REDUCTION, CHANNEL_DIVISOR)


def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv (also the OFA latency-table rule)."""
    return (size - 1) // stride + 1


ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "hswish": nn.Hardswish,
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


@dataclass(frozen=True)
class NetworkGeometry:
    """Shape of a whole static MobileNetV3: stem, fixed first block, stages, head."""

    stem_channels: int
    stem_stride: int
    first_block: BlockGeometry
    stages: Tuple[Tuple[BlockGeometry, ...], ...]
    final_expand_channels: int
    feature_channels: int
    num_classes: int
    dropout: float

    @property
    def blocks(self) -> List[BlockGeometry]:
        return [self.first_block] + [b for stage in self.stages for b in stage]

    @property
    def last_block_channels(self) -> int:
        return self.blocks[-1].out_channels

    def cost(self, resolution: int) -> Tuple[int, int]:
        """(params, MACs) for one image; MACs count conv and linear layers only, as
        ``torch.utils.flop_counter.FlopCounterMode`` does (its FLOPs are 2 x these MACs)."""
        size = conv_out_size(resolution, self.stem_stride)
        params = 3 * self.stem_channels * 9 + 2 * self.stem_channels
        macs = size * size * 3 * self.stem_channels * 9
        for block in self.blocks:
            p, m = block.cost(size)
            params, macs = params + p, macs + m
            size = block.out_size(size)
        last, expand, feature = self.last_block_channels, self.final_expand_channels, self.feature_channels
        params += last * expand + 2 * expand + expand * feature
        macs += size * size * last * expand + expand * feature
        params += feature * self.num_classes + self.num_classes
        macs += feature * self.num_classes
        return params, macs

    def lut_keys(self, resolution: int) -> List[str]:
        """Latency-table keys of every layer, in the order of OFA's ``MBv3LatencyTable``."""
        size = conv_out_size(resolution, self.stem_stride)
        keys = [f"Conv-input:{resolution}x{resolution}x3-output:{size}x{size}x{self.stem_channels}"]
        for block in self.blocks:
            keys.append(block.lut_key(size))
            size = block.out_size(size)
        last, expand, feature = self.last_block_channels, self.final_expand_channels, self.feature_channels
        keys.append(f"Conv_1-input:{size}x{size}x{last}-output:{size}x{size}x{expand}")
        keys.append(f"AvgPool2D-input:{size}x{size}x{expand}-output:1x1x{expand}")
        keys.append(f"Conv_2-input:1x1x{expand}-output:1x1x{feature}")
        keys.append(f"Logits-input:1x1x{feature}-output:{self.num_classes}")
        return keys


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
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite_forward(x, self.reduce.weight, self.reduce.bias,
                                      self.expand.weight, self.expand.bias)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ identity)."""

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


class MobileNetV3Head(nn.Module):
    """Final 1x1 expand conv, global pool, feature-mix 1x1 conv (no BN), dropout, classifier."""

    def __init__(self, in_channels: int, expand_channels: int, feature_channels: int,
                 num_classes: int, dropout: float) -> None:
        super().__init__()
        self.final_expand = conv_bn_act(in_channels, expand_channels, 1, 1, "hswish")
        self.feature_mix = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(expand_channels, feature_channels, 1, bias=False),
            act=make_activation("hswish")))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        x = self.feature_mix(x).flatten(1)
        return self.classifier(self.dropout(x))


class MobileNetV3(nn.Module):
    """A static MobileNetV3 built from a :class:`NetworkGeometry` (an exported OFA subnet)."""

    def __init__(self, geometry: NetworkGeometry) -> None:
        super().__init__()
        g = self.geometry = geometry
        self.stem = conv_bn_act(3, g.stem_channels, 3, g.stem_stride, "hswish")
        self.first_block = MBConv(g.first_block)
        self.stages = nn.ModuleList(nn.Sequential(*(MBConv(b) for b in stage)) for stage in g.stages)
        self.head = MobileNetV3Head(g.last_block_channels, g.final_expand_channels,
                                    g.feature_channels, g.num_classes, g.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


# -------------------------------------------------------------------------------- initialisation
@torch.no_grad()
def initialize_weights(module: nn.Module, generator: torch.Generator) -> None:
    """OFA's 'he_fout' initialisation from an explicit generator (never the global RNG).

    Every parameter and BN buffer is (re)set; a module with parameters this function does not
    know raises, so no weight silently keeps another initialisation.
    """
    for m in module.modules():
        own = [name for name, p in m.named_parameters(recurse=False) if p is not None]
        if isinstance(m, nn.Conv2d):
            # fan_out = k*k*out_channels, as OFA (depthwise included)
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                m.bias.zero_()
            own = [n for n in own if n not in ("weight", "bias")]
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.weight.fill_(1.0)
            m.bias.zero_()
            own = []
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.in_features ** 0.5
            nn.init.uniform_(m.weight, -bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
            own = []
        reset = getattr(m, "reset_extra_parameters", None)
        if reset is not None:
            own = [n for n in own if n not in reset()]
        if own:
            raise TypeError(f"initialize_weights does not know the parameters {own} of "
                            f"{type(m).__name__}; give it a reset_extra_parameters() method")
