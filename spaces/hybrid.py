"""Hybrid convolution-vs-attention space (ETRI one-shot NAS, TANGO 2023).

A convolutional stem maps the image to a ``channels x R x R`` feature map (plus a learned
position embedding); then each of ``num_layers`` layers runs either a convolution block F
(MBConv, elastic expand ratio) or a transformer block G on the same map's ``R*R`` tokens
(elastic heads of fixed ``head_dim`` and MLP ratio); global average pooling, LayerNorm and a
linear head follow. An arch names the op and that op's widths per layer::

    {"layers": [{"op": "conv", "expand_ratio": 4},
                {"op": "attn", "num_heads": 2, "mlp_ratio": 4.0}, ...]}

Flat decisions: ``l{i}.op``, ``l{i}.expand_ratio``, ``l{i}.heads``, ``l{i}.mlp_ratio`` (the
widths of the op a layer did not choose are switched off). The supernet
(:mod:`spaces.hybrid_supernet`) trains the op choice with a convex combination, uniform
sampling or the founding work's weighted sampling.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from raynas.arch import Arch, canonical
from raynas.errors import ArchError, ConfigError
from raynas.registry import register_space
from raynas.space import Decision, SearchSpace, require_choice, require_json_mapping
from spaces.options import choices, resolve_num_classes
from spaces.layers.mbconv import BlockGeometry
from spaces.layers.transformer import transformer_block_cost

CONV, ATTN = "conv", "attn"
OPS = (CONV, ATTN)
OP_FIELDS = {CONV: ("expand_ratio",), ATTN: ("mlp_ratio", "num_heads")}

HYBRID_CIFAR = dict(img_size=32, in_chans=3, num_classes=10, channels=64, stem_stride=2,
                    num_layers=6, kernel_size=3, expand_ratios=[2, 4, 6], num_heads=[1, 2, 4],
                    head_dim=16, mlp_ratios=[2.0, 4.0], qkv_bias=True)


class HybridSpace(SearchSpace):
    """Per-layer MBConv-or-transformer choice on a fixed feature map, with elastic widths."""

    def __init__(self, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 channels: int = 64, stem_stride: int = 2, num_layers: int = 6,
                 kernel_size: int = 3, expand_ratios: Sequence[int] = (2, 4, 6),
                 num_heads: Sequence[int] = (1, 2, 4), head_dim: int = 16,
                 mlp_ratios: Sequence[float] = (2.0, 4.0), qkv_bias: bool = True) -> None:
        super().__init__(
            img_size=int(img_size), in_chans=int(in_chans), num_classes=int(num_classes),
            channels=int(channels), stem_stride=int(stem_stride), num_layers=int(num_layers),
            kernel_size=int(kernel_size),
            expand_ratios=choices("expand_ratios", expand_ratios),
            num_heads=choices("num_heads", num_heads), head_dim=int(head_dim),
            mlp_ratios=choices("mlp_ratios", mlp_ratios, "float"), qkv_bias=bool(qkv_bias))
        o = self.options
        for key in ("img_size", "in_chans", "num_classes", "channels", "stem_stride",
                    "num_layers", "kernel_size", "head_dim"):
            if o[key] <= 0:
                raise ConfigError(f"space option '{key}' must be positive, got {o[key]}")
        if o["img_size"] % o["stem_stride"]:
            raise ConfigError(f"img_size {o['img_size']} is not a multiple of stem_stride "
                              f"{o['stem_stride']}")
        if o["kernel_size"] % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same-size padding), "
                              f"got {o['kernel_size']}")
        self.img_size, self.in_chans = o["img_size"], o["in_chans"]
        self.num_classes, self.channels = o["num_classes"], o["channels"]
        self.stem_stride, self.num_layers = o["stem_stride"], o["num_layers"]
        self.kernel_size, self.head_dim, self.qkv_bias = (
            o["kernel_size"], o["head_dim"], o["qkv_bias"])
        self.expand_ratios, self.num_heads, self.mlp_ratios = (
            o["expand_ratios"], o["num_heads"], o["mlp_ratios"])
        self.feature_size = self.img_size // self.stem_stride

    # ------------------------------------------------------------------ decisions
    def _make_decisions(self) -> List[Decision]:
        out = []
        for i in range(self.num_layers):
            out += [Decision(f"l{i}.op", OPS),
                    Decision(f"l{i}.expand_ratio", tuple(self.expand_ratios)),
                    Decision(f"l{i}.heads", tuple(self.num_heads)),
                    Decision(f"l{i}.mlp_ratio", tuple(self.mlp_ratios))]
        return out

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        layers = []
        for i in range(self.num_layers):
            op = values[f"l{i}.op"]
            if op == CONV:
                layers.append({"op": op, "expand_ratio": values[f"l{i}.expand_ratio"]})
            else:
                layers.append({"op": op, "num_heads": values[f"l{i}.heads"],
                               "mlp_ratio": values[f"l{i}.mlp_ratio"]})
        return self.validate({"layers": layers})

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for i, layer in enumerate(self.validate(arch)["layers"]):
            conv = layer["op"] == CONV
            out[f"l{i}.op"] = layer["op"]
            out[f"l{i}.expand_ratio"] = layer["expand_ratio"] if conv else None
            out[f"l{i}.heads"] = None if conv else layer["num_heads"]
            out[f"l{i}.mlp_ratio"] = None if conv else layer["mlp_ratio"]
        return out

    def validate(self, arch: Arch) -> Arch:
        arch = require_json_mapping(arch, self.name)
        for key in arch:
            if key != "layers":
                raise ArchError(key, arch[key], ("layers",), space=self.name, hint="unknown field")
        layers = arch.get("layers")
        if not isinstance(layers, list) or len(layers) != self.num_layers:
            raise ArchError("layers", layers, f"a list of {self.num_layers} layer dicts",
                            space=self.name)
        return {"layers": [self._validate_layer(i, layer) for i, layer in enumerate(layers)]}

    def _validate_layer(self, i: int, layer: Any) -> Dict[str, Any]:
        where = f"layers[{i}]"
        if not isinstance(layer, dict):
            raise ArchError(where, layer, "a dict with 'op' and that op's widths", space=self.name)
        op = require_choice(f"{where}.op", layer.get("op"), OPS, self.name)
        fields = OP_FIELDS[op]
        for key in layer:
            if key != "op" and key not in fields:
                raise ArchError(f"{where}.{key}", layer[key], ("op",) + fields, space=self.name,
                                hint=f"unknown field for op '{op}'")
        allowed = {"expand_ratio": self.expand_ratios, "num_heads": self.num_heads,
                   "mlp_ratio": self.mlp_ratios}
        out: Dict[str, Any] = {"op": op}
        for key in fields:
            if key not in layer:
                raise ArchError(f"{where}.{key}", None, tuple(allowed[key]), space=self.name,
                                hint=f"op '{op}' needs it")
            out[key] = require_choice(f"{where}.{key}", layer[key], allowed[key], self.name)
        return out

    def validate_widths(self, expand_ratio: Optional[Sequence[int]] = None,
                        num_heads: Optional[Sequence[int]] = None,
                        mlp_ratio: Optional[Sequence[float]] = None) -> Dict[str, List[Any]]:
        """Check per-layer widths for both ops (used by the supernet's mixed training modes)."""
        allowed = {"expand_ratio": self.expand_ratios, "num_heads": self.num_heads,
                   "mlp_ratio": self.mlp_ratios}
        out: Dict[str, List[Any]] = {}
        for key, values in (("expand_ratio", expand_ratio), ("num_heads", num_heads),
                            ("mlp_ratio", mlp_ratio)):
            if values is None:
                continue
            values = canonical(values)
            if not isinstance(values, list) or len(values) != self.num_layers:
                raise ArchError(key, values, f"a list of {self.num_layers} values", space=self.name)
            out[key] = [require_choice(f"{key}[{i}]", v, allowed[key], self.name)
                        for i, v in enumerate(values)]
        return out

    # ------------------------------------------------------------------ cost and models
    def cost(self, arch: Arch, num_classes: Optional[int] = None) -> Dict[str, float]:
        """Params (BN affine included) and MACs of the static network; flops = 2 * macs
        (``num_classes`` defaults to the space option)."""
        arch = self.validate(arch)
        C, R = self.channels, self.feature_size
        K = resolve_num_classes(self.num_classes, num_classes)
        pixels = R * R
        params = self.in_chans * C * 9 + 2 * C + C * pixels  # stem conv and BN, position emb.
        params += 2 * C + C * K + K                          # norm, head
        macs = pixels * C * self.in_chans * 9 + C * K
        for layer in arch["layers"]:
            if layer["op"] == CONV:
                block_params, block_macs = self.conv_geometry(layer["expand_ratio"]).cost(R)
            else:
                block = transformer_block_cost(C, pixels, layer["num_heads"], self.head_dim,
                                               layer["mlp_ratio"], self.qkv_bias)
                block_params, block_macs = block["params"], block["macs"]
            params += block_params
            macs += block_macs
        return {"params": float(params), "macs": float(macs), "flops": float(2 * macs)}

    def conv_geometry(self, expand_ratio: int) -> BlockGeometry:
        """The convolution F of a layer: a stride-1 MBConv (SiLU, no SE) of ``channels *
        expand_ratio`` hidden channels on the fixed map (:class:`spaces.layers.BlockGeometry`)."""
        C = self.channels
        return BlockGeometry(C, C, C * int(expand_ratio), self.kernel_size, 1, "silu", False)

    def input_resolution(self, arch: Arch) -> Optional[int]:
        return self.img_size

    def build_supernet(self, num_classes: Optional[int] = None, mode: str = "arch",
                       seed: int = 0, drop_path_rate: float = 0.0, **kwargs: Any):
        """The hybrid supernet; ``mode`` is "arch", "convex", "uniform" or "weighted"."""
        from spaces.hybrid_supernet import HybridSupernet

        if kwargs:
            raise ConfigError(f"unknown supernet options for space '{self.name}': {sorted(kwargs)}")
        return HybridSupernet(self, resolve_num_classes(self.num_classes, num_classes), mode=mode,
                              seed=seed, drop_path_rate=drop_path_rate)

    def build_static(self, arch: Arch, num_classes: Optional[int] = None,
                     drop_path_rate: float = 0.0):
        """An untrained :class:`spaces.hybrid_supernet.HybridNet` for ``arch``."""
        from spaces.hybrid_supernet import HybridNet

        return HybridNet(self, self.validate(arch), resolve_num_classes(self.num_classes, num_classes),
                         drop_path_rate=drop_path_rate)


register_space("hybrid", "Per-layer MBConv-or-transformer choice (your own options)")(HybridSpace)


@register_space("hybrid_cifar")
def hybrid_cifar(**options: Any) -> HybridSpace:
    """Hybrid conv/attention space for 32x32 images: 64 channels at 16x16, 6 layers, 10 classes."""
    return HybridSpace(**{**HYBRID_CIFAR, **options})
