"""Elastic (weight-sharing) MBConv for Once-for-All style supernets, and its parts.

Each layer holds the weights of its largest setting and, in ``forward``, uses a slice of them:
the input width comes from the tensor (``x.shape[1]``), the output width and kernel size from
instance attributes that the supernet sets when it activates an arch. Slices are views of the
parameters (no cached copies, nothing class-level or global); when the active setting is the
largest one the parameter itself is used, so the largest subnet costs what a static model costs.
Each layer also gives its static layer for a setting (:class:`~spaces.layers.export.ElasticLayer`),
with the same slices, so forward and export cannot disagree.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from spaces.layers.batchnorm import ElasticBatchNorm2d
from spaces.layers.export import ElasticLayer, prefixed
from spaces.layers.mbconv import (CHANNEL_DIVISOR, BlockGeometry, MBConv, SqueezeExcite,
                                  expanded_channels, make_activation, se_channels,
                                  squeeze_excite_forward)
from spaces.layers.slicing import leading


def centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The central ``kernel`` x ``kernel`` window of a square conv weight (a view)."""
    big = weight.shape[-1]
    if big == kernel:
        return weight
    start = (big - kernel) // 2
    return weight[..., start:start + kernel, start:start + kernel]


class ElasticConv2d(nn.Conv2d, ElasticLayer):
    """A dense conv whose active weight is ``weight[:active_out_channels, :x.shape[1]]``."""

    def __init__(self, max_in_channels: int, max_out_channels: int, kernel_size: int = 1,
                 stride: int = 1, bias: bool = False) -> None:
        super().__init__(max_in_channels, max_out_channels, kernel_size, stride,
                         kernel_size // 2, bias=bias)
        self.active_out_channels = max_out_channels

    def active_weight(self, in_channels: int, out_channels: int) -> torch.Tensor:
        return leading(self.weight, out_channels, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.active_out_channels
        return F.conv2d(x, self.active_weight(x.shape[1], out), leading(self.bias, out),
                        self.stride, self.padding)

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> nn.Conv2d:
        return nn.Conv2d(**config)

    def static_config(self, *, in_channels: int, out_channels: int) -> Dict[str, Any]:
        k = self.kernel_size[0]
        return {"in_channels": int(in_channels), "out_channels": int(out_channels), "kernel_size": k,
                "stride": self.stride[0], "padding": k // 2, "bias": self.bias is not None}

    def static_state_dict(self, *, in_channels: int, out_channels: int) -> Dict[str, torch.Tensor]:
        out = {"weight": self.active_weight(in_channels, out_channels)}
        if self.bias is not None:
            out["bias"] = leading(self.bias, out_channels)
        return out


class ElasticDepthwiseConv2d(nn.Conv2d, ElasticLayer):
    """Depthwise conv with elastic width (from the input) and kernel size (``active_kernel``).

    A smaller kernel is the centre crop of the largest one. With ``kernel_transform`` (OFA), each
    step down (e.g. 7->5, 5->3) multiplies the cropped kernel by a learned
    (k*k) x (k*k) matrix shared by all channels of this layer, initialised to the identity.
    """

    def __init__(self, max_channels: int, kernel_choices: Sequence[int], stride: int = 1,
                 kernel_transform: bool = False) -> None:
        kernels = tuple(sorted(set(int(k) for k in kernel_choices)))
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"depthwise kernel sizes must be odd and positive, got {kernels}")
        big = kernels[-1]
        super().__init__(max_channels, max_channels, big, stride, big // 2,
                         groups=max_channels, bias=False)
        self.kernel_choices = kernels
        self.kernel_transform = bool(kernel_transform)
        # (source, target) pairs from the largest kernel down, e.g. (7, 5), (5, 3)
        self._steps: Tuple[Tuple[int, int], ...] = tuple(zip(kernels[::-1][:-1], kernels[::-1][1:]))
        if self.kernel_transform:
            for src, dst in self._steps:
                self.register_parameter(self._transform_name(src, dst),
                                        nn.Parameter(torch.eye(dst * dst)))
        self.active_kernel = big

    @staticmethod
    def _transform_name(src: int, dst: int) -> str:
        return f"transform_{src}to{dst}"

    def reset_extra_parameters(self) -> List[str]:
        """Identity kernel transforms (so a fresh supernet starts from plain centre crops)."""
        names = []
        if self.kernel_transform:
            with torch.no_grad():
                for src, dst in self._steps:
                    name = self._transform_name(src, dst)
                    getattr(self, name).copy_(torch.eye(dst * dst))
                    names.append(name)
        return names

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        if kernel not in self.kernel_choices:
            raise ValueError(f"kernel {kernel} is not one of {self.kernel_choices}")
        weight = leading(self.weight, channels)
        if not self.kernel_transform:
            return centre_crop(weight, kernel)
        for src, dst in self._steps:
            if src <= kernel:
                break
            crop = centre_crop(weight, dst).reshape(channels, dst * dst)
            weight = (crop @ getattr(self, self._transform_name(src, dst)).t()).view(channels, 1, dst, dst)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, kernel = x.shape[1], self.active_kernel
        return F.conv2d(x, self.active_weight(channels, kernel), None, self.stride,
                        kernel // 2, 1, channels)

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> nn.Conv2d:
        return nn.Conv2d(**config)

    def static_config(self, *, channels: int, kernel: int) -> Dict[str, Any]:
        return {"in_channels": int(channels), "out_channels": int(channels), "kernel_size": int(kernel),
                "stride": self.stride[0], "padding": int(kernel) // 2, "groups": int(channels),
                "bias": False}

    def static_state_dict(self, *, channels: int, kernel: int) -> Dict[str, torch.Tensor]:
        return {"weight": self.active_weight(channels, kernel)}


class ElasticSqueezeExcite(nn.Module, ElasticLayer):
    """Squeeze-excite on the first ``x.shape[1]`` channels; hidden width ``se_channels(C)``."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        hidden = se_channels(max_channels)
        self.reduce = nn.Conv2d(max_channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, max_channels, 1, bias=True)

    def _slices(self, channels: int):
        hidden = se_channels(channels)
        return (leading(self.reduce.weight, hidden, channels), leading(self.reduce.bias, hidden),
                leading(self.expand.weight, channels, hidden), leading(self.expand.bias, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite_forward(x, *self._slices(x.shape[1]))

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> SqueezeExcite:
        return SqueezeExcite(**config)

    def static_config(self, *, channels: int) -> Dict[str, Any]:
        return {"channels": int(channels), "hidden": se_channels(channels)}

    def static_state_dict(self, *, channels: int) -> Dict[str, torch.Tensor]:
        names = ("reduce.weight", "reduce.bias", "expand.weight", "expand.bias")
        return dict(zip(names, self._slices(channels)))


class ElasticMBConv(nn.Module, ElasticLayer):
    """An MBConv block with elastic depthwise kernel and expand ratio (in/out widths fixed).

    Module names match :class:`spaces.layers.mbconv.MBConv`, so the two state dicts line up.
    The middle width of expand ratio ``e`` is ``make_divisible(round(in_channels * e),
    channel_divisor)``: OFA's rule with the default divisor 8, exactly ``in_channels * e`` with 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str,
                 use_se: bool, kernel_choices: Sequence[int], expand_choices: Sequence[float],
                 kernel_transform: bool = False, channel_divisor: int = CHANNEL_DIVISOR) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.activation, self.use_se = activation, use_se
        self.channel_divisor = int(channel_divisor)
        self.expand_choices = tuple(sorted(expand_choices))
        mid = self.mid_channels(self.expand_choices[-1])
        self.expand = nn.Sequential()
        self.expand.add_module("conv", ElasticConv2d(in_channels, mid, 1))
        self.expand.add_module("bn", ElasticBatchNorm2d(mid))
        self.expand.add_module("act", make_activation(activation))
        self.depthwise = nn.Sequential()
        self.depthwise.add_module("conv", ElasticDepthwiseConv2d(mid, kernel_choices, stride,
                                                                 kernel_transform))
        self.depthwise.add_module("bn", ElasticBatchNorm2d(mid))
        self.depthwise.add_module("act", make_activation(activation))
        self.se = ElasticSqueezeExcite(mid) if use_se else None
        self.project = nn.Sequential()
        self.project.add_module("conv", ElasticConv2d(mid, out_channels, 1))
        self.project.add_module("bn", ElasticBatchNorm2d(out_channels))
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.active_expand_ratio = self.expand_choices[-1]

    @property
    def max_mid_channels(self) -> int:
        return self.expand.conv.out_channels

    def mid_channels(self, expand_ratio: float) -> int:
        return expanded_channels(self.in_channels, expand_ratio, self.channel_divisor)

    def geometry(self, kernel: int, expand_ratio: float) -> BlockGeometry:
        return BlockGeometry(self.in_channels, self.out_channels, self.mid_channels(expand_ratio),
                             kernel, self.stride, self.activation, self.use_se)

    def configure(self, kernel: int, expand_ratio: float) -> None:
        """Select the active kernel size and expand ratio (instance state only)."""
        if kernel not in self.depthwise.conv.kernel_choices:
            raise ValueError(f"kernel {kernel} is not one of {self.depthwise.conv.kernel_choices}")
        mid = self.mid_channels(expand_ratio)
        if mid > self.max_mid_channels:
            raise ValueError(f"expand ratio {expand_ratio} needs {mid} channels, over the "
                             f"{self.max_mid_channels} this block holds")
        self.expand.conv.active_out_channels = mid
        self.depthwise.conv.active_kernel = kernel
        self.active_expand_ratio = expand_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(self.expand(x))
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return h + x if self.use_shortcut else h

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> MBConv:
        return MBConv.from_config(config)

    def static_config(self, *, kernel: int, expand_ratio: float) -> Dict[str, Any]:
        return asdict(self.geometry(kernel, expand_ratio))

    def static_state_dict(self, *, kernel: int, expand_ratio: float) -> Dict[str, torch.Tensor]:
        mid = self.mid_channels(expand_ratio)
        out = {
            **prefixed("expand.conv.", self.expand.conv.static_state_dict(
                in_channels=self.in_channels, out_channels=mid)),
            **prefixed("expand.bn.", self.expand.bn.static_state_dict(num_features=mid)),
            **prefixed("depthwise.conv.", self.depthwise.conv.static_state_dict(channels=mid, kernel=kernel)),
            **prefixed("depthwise.bn.", self.depthwise.bn.static_state_dict(num_features=mid)),
            **prefixed("project.conv.", self.project.conv.static_state_dict(
                in_channels=mid, out_channels=self.out_channels)),
            **prefixed("project.bn.", self.project.bn.static_state_dict(num_features=self.out_channels)),
        }
        if self.se is not None:
            out.update(prefixed("se.", self.se.static_state_dict(channels=mid)))
        return out

    @torch.no_grad()
    def sort_channels(self, protected_widths: Sequence[int] = ()) -> torch.Tensor:
        """OFA channel sorting: put the expanded channels in order of importance (L1 norm of the
        projection weights that read them), so every expand ratio keeps the most important ones.

        The same permutation is applied to every producer (expand conv rows and its BN, the
        depthwise conv and its BN, the SE) and to the consumer (projection columns), so the
        largest block computes the same function. ``protected_widths`` are channel counts whose
        boundaries channels may not cross (OFA's later width phases): sorting happens inside
        each bucket ``[0, w1), [w1, w2), ...``. The SE hidden units are sorted too, by the L1
        norm of the SE expand weights that read them. Returns the permutation.
        """
        project_w = self.project.conv.weight
        importance = project_w.abs().sum(dim=(0, 2, 3))
        total = importance.shape[0]
        edges = sorted({int(w) for w in protected_widths if 0 < int(w) < total}) + [total]
        pieces, start = [], 0
        for end in edges:
            local = torch.argsort(importance[start:end], descending=True, stable=True)
            pieces.append(local + start)
            start = end
        order = torch.cat(pieces)

        project_w.copy_(project_w.index_select(1, order))
        for conv in (self.expand.conv, self.depthwise.conv):
            conv.weight.copy_(conv.weight.index_select(0, order))
        self.expand.bn.permute_(order)
        self.depthwise.bn.permute_(order)
        if self.se is not None:
            reduce, expand = self.se.reduce, self.se.expand
            reduce.weight.copy_(reduce.weight.index_select(1, order))
            expand.weight.copy_(expand.weight.index_select(0, order))
            expand.bias.copy_(expand.bias.index_select(0, order))
            hidden_order = torch.argsort(expand.weight.abs().sum(dim=(0, 2, 3)), descending=True,
                                         stable=True)
            expand.weight.copy_(expand.weight.index_select(1, hidden_order))
            reduce.weight.copy_(reduce.weight.index_select(0, hidden_order))
            reduce.bias.copy_(reduce.bias.index_select(0, hidden_order))
        return order
