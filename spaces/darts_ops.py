"""DARTS' candidate operations (separable and dilated convolutions, pools, skip, none).

ReLU-Conv-BN, the factorized reduction and the zero op are NB201's modules (spaces/nb201_ops.py):
both benchmarks define them identically. In the search supernet BN is affine-free and the pools
are followed by an affine-free BN (as in DARTS' ``MixedOp``), so every op's output is normalised
before mixing.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch.nn as nn

from raynas.errors import ArchError
from spaces.darts import PRIMITIVES
from spaces.nb201_ops import FactorizedReduce, ReLUConvBN, Zero

__all__ = ["SepConv", "DilConv", "make_darts_op", "ReLUConvBN", "FactorizedReduce", "Zero"]


class DilConv(nn.Sequential):
    """ReLU -> depthwise k x k conv (dilation d) -> pointwise 1x1 conv -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 ``DilConv`` blocks; only the first one strides."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, stride, affine)


_FACTORIES: Dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda C, stride, affine: Zero(C, C, stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1,
                                                           count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}


def make_darts_op(name: str, C: int, stride: int, affine: bool = True, search: bool = False) -> nn.Module:
    """One DARTS op on ``C`` channels; ``search=True`` appends the affine-free BN to pools."""
    if name not in _FACTORIES:
        raise ArchError("op", name, PRIMITIVES, space="darts")
    op = _FACTORIES[name](C, stride, affine)
    if search and "pool" in name:
        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
    return op
