"""The static MobileNetV3 of an OFA arch: its geometry (cost and latency-table keys), the
network an exported subnet is, and OFA's seeded initialisation.

Built from the shared blocks of :mod:`spaces.layers.mbconv`; :class:`NetworkGeometry` is the
network's config (``MobileNetV3(geometry)`` rebuilds it, ``space.network_geometry(arch)``
gives it).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn as nn

from spaces.layers.mbconv import BlockGeometry, MBConv, conv_bn_act, conv_out_size, make_activation


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
