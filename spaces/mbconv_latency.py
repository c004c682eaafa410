"""The inverse of :meth:`BlockGeometry.lut_key` / :meth:`NetworkGeometry.lut_keys`: build the
module an OFA latency-table key names, so each operator can be timed on its own.

Keys look like ``expanded_conv-input:56x56x24-output:28x28x40-expand:72-kernel:5-stride:2-
idskip:0-se:1-hs:0``, ``Conv-input:224x224x3-output:112x112x24``, ``Conv_1-...``,
``AvgPool2D-...``, ``Conv_2-...`` and ``Logits-input:1x1x1536-output:1000``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Tuple

import torch
import torch.nn as nn

from spaces.layers.mbconv import BlockGeometry, MBConv, conv_bn_act, make_activation

Shape = Tuple[int, ...]


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def parse_lut_key(key: str) -> Tuple[str, Dict[str, str]]:
    """(operator name, {field: value}) of a latency-table key."""
    op, *fields = key.split("-")
    parsed = {}
    for field in fields:
        name, sep, value = field.partition(":")
        if not sep:
            raise ValueError(f"cannot read latency-table key '{key}': field '{field}' is not name:value")
        parsed[name] = value
    if "input" not in parsed or "output" not in parsed:
        raise ValueError(f"latency-table key '{key}' has no input/output shape")
    return op, parsed


def _hwc(value: str, key: str) -> Tuple[int, int, int]:
    parts = value.split("x")
    if len(parts) != 3:
        raise ValueError(f"latency-table key '{key}': shape '{value}' is not HxWxC")
    h, w, c = (int(p) for p in parts)
    return h, w, c


def _stride(size_in: int, size_out: int, key: str) -> int:
    for stride in (1, 2, 3, 4):
        if (size_in - 1) // stride + 1 == size_out:
            return stride
    raise ValueError(f"latency-table key '{key}': no stride maps size {size_in} to {size_out}")


def layer_from_lut_key(key: str) -> Tuple[nn.Module, Shape]:
    """(module, input shape at batch 1) of the operator ``key`` names (untrained weights)."""
    op, f = parse_lut_key(key)
    h, w, c_in = _hwc(f["input"], key)
    shape = (1, c_in, h, w)
    if op == "expanded_conv":
        _, _, c_out = _hwc(f["output"], key)
        mid, kernel, stride = int(f["expand"]), int(f["kernel"]), int(f["stride"])
        geometry = BlockGeometry(c_in, c_out, mid, kernel, stride, "hswish" if f.get("hs") == "1" else "relu",
                                 f.get("se") == "1", has_expand=mid != c_in)
        if int(f.get("idskip", geometry.use_shortcut)) != int(geometry.use_shortcut):
            raise ValueError(f"latency-table key '{key}': idskip disagrees with its shapes and stride")
        return MBConv(geometry), shape
    if op == "Conv":  # the stem
        oh, _, c_out = _hwc(f["output"], key)
        return conv_bn_act(c_in, c_out, 3, _stride(h, oh, key), "hswish"), shape
    if op == "Conv_1":  # final 1x1 expand
        _, _, c_out = _hwc(f["output"], key)
        return conv_bn_act(c_in, c_out, 1, 1, "hswish"), shape
    if op == "AvgPool2D":
        return GlobalAvgPool(), shape
    if op == "Conv_2":  # feature mix: 1x1 conv without BN, then h-swish
        _, _, c_out = _hwc(f["output"], key)
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(c_in, c_out, 1, bias=False),
                                         act=make_activation("hswish"))), shape
    if op == "Logits":
        return nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, int(f["output"]))), shape
    raise ValueError(f"latency-table key '{key}': unknown operator '{op}'")
