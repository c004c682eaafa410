"""Elastic Vision Transformer space (AutoFormer / PreNAS) with weight entanglement.

An arch is ``{"embed_dim": 192, "depth": 13, "num_heads": [...], "mlp_ratio": [...]}`` with one
``num_heads`` / ``mlp_ratio`` entry per active layer (layers switched off by ``depth`` are absent).
The embed dim is shared by every layer; head dim is fixed (64 by default), so a layer's QKV dim
is ``64 * num_heads``; the MLP hidden width is ``int(embed_dim * mlp_ratio)``.

Flat decisions: ``embed_dim``, ``depth``, ``l{i}.heads`` and ``l{i}.mlp_ratio``.
Weight entanglement and the head-major QKV row layout are described in
:mod:`spaces.layers.transformer`; the supernet and its timm export live in :mod:`spaces.vit_supernet`.
Presets ``autoformer_tiny/small/base`` reproduce AutoFormer's ``supernet-{T,S,B}.yaml`` exactly;
``vit_cifar`` is a small 32x32 space; :func:`autoformer_space_options` reads such a YAML.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from raynas.arch import Arch, canonical
from raynas.errors import ArchError, ConfigError
from raynas.registry import register_space
from raynas.space import Decision, SearchSpace, require_choice, require_json_mapping
from spaces.options import choices, resolve_num_classes
from spaces.layers.transformer import transformer_block_cost

ARCH_FIELDS = ("depth", "embed_dim", "mlp_ratio", "num_heads")

# AutoFormer's three spaces, as in supernet_supernet-{T,S,B}.yaml of microsoft/Cream
AUTOFORMER_TINY = dict(embed_dims=[192, 216, 240], depths=[12, 13, 14], num_heads=[3, 4],
                       mlp_ratios=[3.5, 4.0], supernet_embed_dim=256, supernet_depth=14,
                       supernet_num_heads=4, supernet_mlp_ratio=4.0)
AUTOFORMER_SMALL = dict(embed_dims=[320, 384, 448], depths=[12, 13, 14], num_heads=[5, 6, 7],
                        mlp_ratios=[3.0, 3.5, 4.0], supernet_embed_dim=448, supernet_depth=14,
                        supernet_num_heads=7, supernet_mlp_ratio=4.0)
AUTOFORMER_BASE = dict(embed_dims=[528, 576, 624], depths=[14, 15, 16], num_heads=[9, 10],
                       mlp_ratios=[3.0, 3.5, 4.0], supernet_embed_dim=640, supernet_depth=16,
                       supernet_num_heads=10, supernet_mlp_ratio=4.0)
# small enough to train on a couple of CPU cores in tests, large enough for a CIFAR benchmark
VIT_CIFAR = dict(embed_dims=[64, 96, 128], depths=[4, 5, 6], num_heads=[1, 2],
                 mlp_ratios=[2.0, 3.0, 4.0], supernet_embed_dim=128, supernet_depth=6,
                 supernet_num_heads=2, supernet_mlp_ratio=4.0,
                 img_size=32, patch_size=4, num_classes=10)


def vit_cost(embed_dim: int, num_heads: Sequence[int], mlp_ratio: Sequence[float], *,
             img_size: int, patch_size: int, in_chans: int, num_classes: int,
             head_dim: int = 64, qkv_bias: bool = True) -> Dict[str, float]:
    """Analytic params / MACs / FLOPs of a ViT with a cls token and learned position embedding.

    FLOPs are ``2 * macs`` over the patch convolution, every linear layer and both attention
    matmuls, which is what ``torch.utils.flop_counter.FlopCounterMode`` counts.
    """
    e = int(embed_dim)
    patches = (img_size // patch_size) ** 2
    tokens = patches + 1
    params = (e * in_chans * patch_size * patch_size + e  # patch embedding
              + e + tokens * e                            # cls token, position embedding
              + 2 * e + e * num_classes + num_classes)    # final norm, head
    macs = patches * e * in_chans * patch_size * patch_size + e * num_classes
    for heads, ratio in zip(num_heads, mlp_ratio):
        block = transformer_block_cost(e, tokens, int(heads), head_dim, float(ratio), qkv_bias)
        params += block["params"]
        macs += block["macs"]
    return {"params": float(params), "macs": float(macs), "flops": float(2 * macs)}


class ElasticViTSpace(SearchSpace):
    """Elastic ViT (AutoFormer/PreNAS): embed dim, depth, per-layer heads and MLP ratio."""

    def __init__(self, embed_dims: Sequence[int], depths: Sequence[int], num_heads: Sequence[int],
                 mlp_ratios: Sequence[float], supernet_embed_dim: Optional[int] = None,
                 supernet_depth: Optional[int] = None, supernet_num_heads: Optional[int] = None,
                 supernet_mlp_ratio: Optional[float] = None, img_size: int = 224,
                 patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 head_dim: int = 64, qkv_bias: bool = True) -> None:
        embed_dims = choices("embed_dims", embed_dims)
        depths = choices("depths", depths)
        num_heads = choices("num_heads", num_heads)
        mlp_ratios = choices("mlp_ratios", mlp_ratios, "float")
        super().__init__(
            embed_dims=embed_dims, depths=depths, num_heads=num_heads, mlp_ratios=mlp_ratios,
            supernet_embed_dim=int(supernet_embed_dim or embed_dims[-1]),
            supernet_depth=int(supernet_depth or depths[-1]),
            supernet_num_heads=int(supernet_num_heads or num_heads[-1]),
            supernet_mlp_ratio=float(supernet_mlp_ratio or mlp_ratios[-1]),
            img_size=int(img_size), patch_size=int(patch_size), in_chans=int(in_chans),
            num_classes=int(num_classes), head_dim=int(head_dim), qkv_bias=bool(qkv_bias))
        o = self.options
        self.embed_dims, self.depths = o["embed_dims"], o["depths"]
        self.num_heads, self.mlp_ratios = o["num_heads"], o["mlp_ratios"]
        self.supernet_embed_dim, self.supernet_depth = o["supernet_embed_dim"], o["supernet_depth"]
        self.supernet_num_heads = o["supernet_num_heads"]
        self.supernet_mlp_ratio = o["supernet_mlp_ratio"]
        self.img_size, self.patch_size = o["img_size"], o["patch_size"]
        self.in_chans, self.num_classes = o["in_chans"], o["num_classes"]
        self.head_dim, self.qkv_bias = o["head_dim"], o["qkv_bias"]
        self._check_supernet_holds_space()

    def _check_supernet_holds_space(self) -> None:
        checks = [
            ("embed_dims", self.embed_dims[-1], "supernet_embed_dim", self.supernet_embed_dim),
            ("depths", self.depths[-1], "supernet_depth", self.supernet_depth),
            ("num_heads", self.num_heads[-1], "supernet_num_heads", self.supernet_num_heads),
            ("MLP hidden width int(max embed_dim * max mlp_ratio)",
             int(self.embed_dims[-1] * self.mlp_ratios[-1]), "int(supernet_embed_dim * "
             "supernet_mlp_ratio)", int(self.supernet_embed_dim * self.supernet_mlp_ratio)),
        ]
        for what, largest, holder, size in checks:
            if largest > size:
                raise ConfigError(f"the largest {what} ({largest}) exceeds {holder} ({size}); "
                                  f"raise {holder} or drop the larger choices")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size "
                              f"{self.patch_size}")
        for key in ("img_size", "patch_size", "in_chans", "num_classes", "head_dim"):
            if self.options[key] <= 0:
                raise ConfigError(f"space option '{key}' must be positive, got {self.options[key]}")

    # ------------------------------------------------------------------ decisions
    def _make_decisions(self) -> List[Decision]:
        out = [Decision("embed_dim", tuple(self.embed_dims)), Decision("depth", tuple(self.depths))]
        for i in range(self.depths[-1]):
            out.append(Decision(f"l{i}.heads", tuple(self.num_heads)))
            out.append(Decision(f"l{i}.mlp_ratio", tuple(self.mlp_ratios)))
        return out

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        depth = values["depth"]
        try:
            layers = range(int(depth))
        except (TypeError, ValueError):
            raise ArchError("depth", depth, tuple(self.depths), space=self.name) from None
        return self.validate({
            "embed_dim": values["embed_dim"], "depth": depth,
            "num_heads": [values[f"l{i}.heads"] for i in layers],
            "mlp_ratio": [values[f"l{i}.mlp_ratio"] for i in layers]})

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        arch = self.validate(arch)
        out: Dict[str, Any] = {"embed_dim": arch["embed_dim"], "depth": arch["depth"]}
        for i in range(self.depths[-1]):
            active = i < arch["depth"]
            out[f"l{i}.heads"] = arch["num_heads"][i] if active else None
            out[f"l{i}.mlp_ratio"] = arch["mlp_ratio"][i] if active else None
        return out

    def validate(self, arch: Arch) -> Arch:
        arch = require_json_mapping(arch, self.name)
        for key in arch:
            if key not in ARCH_FIELDS:
                raise ArchError(key, arch[key], ARCH_FIELDS, space=self.name, hint="unknown field")
        for key in ARCH_FIELDS:
            if key not in arch:
                raise ArchError(key, None, ARCH_FIELDS, space=self.name, hint="missing field")
        embed_dim = require_choice("embed_dim", arch["embed_dim"], self.embed_dims, self.name)
        depth = require_choice("depth", arch["depth"], self.depths, self.name)
        per_layer = {}
        for key, allowed in (("num_heads", self.num_heads), ("mlp_ratio", self.mlp_ratios)):
            values = arch[key]
            if not isinstance(values, list) or len(values) != depth:
                raise ArchError(key, values, f"a list of {depth} values (one per active layer) "
                                f"from {allowed}", space=self.name)
            per_layer[key] = [require_choice(f"{key}[{i}]", v, allowed, self.name)
                              for i, v in enumerate(values)]
        return {"embed_dim": embed_dim, "depth": depth, **per_layer}

    # ------------------------------------------------------------------ cost and models
    def cost(self, arch: Arch, num_classes: Optional[int] = None) -> Dict[str, float]:
        """Params / MACs / FLOPs of the static model (``num_classes`` defaults to the option)."""
        arch = self.validate(arch)
        return vit_cost(arch["embed_dim"], arch["num_heads"], arch["mlp_ratio"],
                        img_size=self.img_size, patch_size=self.patch_size,
                        in_chans=self.in_chans,
                        num_classes=resolve_num_classes(self.num_classes, num_classes),
                        head_dim=self.head_dim, qkv_bias=self.qkv_bias)

    def input_resolution(self, arch: Arch) -> Optional[int]:
        return self.img_size

    def build_supernet(self, num_classes: Optional[int] = None, drop_rate: float = 0.0,
                       attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, **kwargs: Any):
        """The weight-entangled supernet (dropout rates scale with the active embed dim)."""
        from spaces.vit_supernet import ElasticViTSupernet

        if kwargs:
            raise ConfigError(f"unknown supernet options for space '{self.name}': {sorted(kwargs)}")
        return ElasticViTSupernet(self, resolve_num_classes(self.num_classes, num_classes),
                                  drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                                  drop_path_rate=drop_path_rate)

    def isomer_structure(self):
        """PreNAS isomer groups and block weights (:class:`spaces.vit_isomers.ViTIsomers`)."""
        from spaces.vit_isomers import ViTIsomers

        return ViTIsomers(self)

    def build_static(self, arch: Arch, num_classes: Optional[int] = None, drop_rate: float = 0.0,
                     attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        """An untrained timm ``VisionTransformer`` with per-layer heads and MLP widths."""
        from spaces.vit_supernet import build_timm_vit

        return build_timm_vit(self, self.validate(arch),
                              resolve_num_classes(self.num_classes, num_classes),
                              drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                              drop_path_rate=drop_path_rate)


# ---------------------------------------------------------------------- AutoFormer YAML files
_YAML_KEYS = {"EMBED_DIM": "embed_dims", "DEPTH": "depths", "NUM_HEADS": "num_heads",
              "MLP_RATIO": "mlp_ratios"}
_SUPERNET_KEYS = {"EMBED_DIM": "supernet_embed_dim", "DEPTH": "supernet_depth",
                  "NUM_HEADS": "supernet_num_heads", "MLP_RATIO": "supernet_mlp_ratio"}


def load_autoformer_yaml(source: Union[str, Path, Mapping[str, Any]]) -> Dict[str, Any]:
    """Read an AutoFormer config (``SUPERNET`` / ``SEARCH_SPACE`` / optional ``RETRAIN``)."""
    if isinstance(source, Mapping):
        return dict(source)
    import yaml

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"AutoFormer YAML not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with SUPERNET and SEARCH_SPACE sections")
    return data


def _section(data: Mapping[str, Any], name: str, keys: Sequence[str]) -> Dict[str, Any]:
    section = data.get(name)
    if not isinstance(section, Mapping):
        raise ConfigError(f"AutoFormer config needs a '{name}' section with {sorted(keys)}")
    missing = [k for k in keys if k not in section]
    if missing:
        raise ConfigError(f"AutoFormer config section '{name}' lacks {missing}")
    return dict(section)


def autoformer_retrain_arch(source: Union[str, Path, Mapping[str, Any]]) -> Arch:
    """The arch of a published subnet (the ``RETRAIN`` section), in this space's arch form."""
    retrain = _section(load_autoformer_yaml(source), "RETRAIN", list(_YAML_KEYS))
    depth = int(retrain["DEPTH"])
    heads, ratios = list(retrain["NUM_HEADS"]), list(retrain["MLP_RATIO"])
    if len(heads) != depth or len(ratios) != depth:
        raise ConfigError(f"RETRAIN has DEPTH {depth} but {len(heads)} NUM_HEADS and "
                          f"{len(ratios)} MLP_RATIO entries")
    return canonical({"embed_dim": int(retrain["EMBED_DIM"]), "depth": depth,
                      "num_heads": [int(h) for h in heads],
                      "mlp_ratio": [float(r) for r in ratios]})


def autoformer_space_options(source: Union[str, Path, Mapping[str, Any]],
                             include_retrain: bool = False) -> Dict[str, Any]:
    """:class:`ElasticViTSpace` options from an AutoFormer YAML (a path or its parsed dict).

    ``include_retrain`` widens the choices with the values of the file's ``RETRAIN`` subnet:
    AutoFormer's published subnets are not always inside their own search space (AutoFormer-T
    uses MLP ratio 3.0, its space allows {3.5, 4}); they still fit the supernet's weights.
    Image size, patch size and classes are not in these files: pass them to the space.
    """
    data = load_autoformer_yaml(source)
    space = _section(data, "SEARCH_SPACE", list(_YAML_KEYS))
    supernet = _section(data, "SUPERNET", list(_SUPERNET_KEYS))
    options: Dict[str, Any] = {}
    for key, option in _YAML_KEYS.items():
        values = space[key] if isinstance(space[key], list) else [space[key]]
        options[option] = [float(v) if key == "MLP_RATIO" else int(v) for v in values]
    for key, option in _SUPERNET_KEYS.items():
        options[option] = float(supernet[key]) if key == "MLP_RATIO" else int(supernet[key])
    if include_retrain:
        arch = autoformer_retrain_arch(data)
        for option, extra in (("embed_dims", [arch["embed_dim"]]), ("depths", [arch["depth"]]),
                              ("num_heads", arch["num_heads"]), ("mlp_ratios", arch["mlp_ratio"])):
            options[option] = sorted(set(options[option]) | set(extra))
    return options


# ---------------------------------------------------------------------- presets
def _preset(defaults: Dict[str, Any], options: Dict[str, Any]) -> ElasticViTSpace:
    return ElasticViTSpace(**{**defaults, **options})


register_space("vit", "Elastic ViT with your own choices (see autoformer_space_options)")(
    ElasticViTSpace)


@register_space("autoformer_tiny")
def autoformer_tiny(**options: Any) -> ElasticViTSpace:
    """AutoFormer-T space: embed {192,216,240}, depth 12-14, heads {3,4}, MLP {3.5,4}; 224px."""
    return _preset(AUTOFORMER_TINY, options)


@register_space("autoformer_small")
def autoformer_small(**options: Any) -> ElasticViTSpace:
    """AutoFormer-S space: embed {320,384,448}, depth 12-14, heads 5-7, MLP {3,3.5,4}; 224px."""
    return _preset(AUTOFORMER_SMALL, options)


@register_space("autoformer_base")
def autoformer_base(**options: Any) -> ElasticViTSpace:
    """AutoFormer-B space: embed {528,576,624}, depth 14-16, heads {9,10}, MLP {3,3.5,4}; 224px."""
    return _preset(AUTOFORMER_BASE, options)


@register_space("vit_cifar")
def vit_cifar(**options: Any) -> ElasticViTSpace:
    """Small elastic ViT for 32x32 images (patch 4, embed {64,96,128}, depth 4-6, 10 classes)."""
    return _preset(VIT_CIFAR, options)
