"""An exported OFA subnet as a timm ``MobileNetV3``: block definitions and renamed weights.

timm builds MobileNetV3-family networks from block strings (``ds_r1_k3_s1_e1_c16_nre``,
``ir_r1_k5_s2_e3_c40_se0.25_nre``, ``cn_r1_k1_s1_c960``), the notation of its own
``mobilenetv3_large_100`` definition. A static OFA subnet (:class:`spaces.ofa_mbv3_net.MobileNetV3`)
is exactly such a network -- hard-swish stem, a depthwise-separable first block, inverted
residuals with ReLU or hard-swish and hard-sigmoid squeeze-excite, a 1x1 conv, pooling, a 1x1
head conv without bias -- so it becomes a timm model whose eval outputs equal the subnet's.
What timm needs to rebuild it is plain JSON (:func:`timm_config`), read by the loader in the
README (timm, torch and safetensors only; no raynas).

timm's stem always has stride 2: a CIFAR-sized space (stride-1 stem) is rebuilt with the stem
conv's stride set after construction (``stem_stride`` in the config).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, List, Mapping, Tuple

import torch
import torch.nn as nn

from raynas.errors import ConfigError
from spaces.layers.mbconv import BlockGeometry
from spaces.ofa_mbv3_net import MobileNetV3, NetworkGeometry

TIMM_FORMAT = "raynas-timm-mobilenetv3/1"
_ACT = {"relu": "_nre", "hswish": ""}   # the model's default activation is hard-swish


def _block_string(b: BlockGeometry, kind: str) -> str:
    if b.activation not in _ACT:
        raise ConfigError(f"timm's MobileNetV3 blocks have ReLU or hard-swish, not {b.activation!r}")
    expand = b.mid_channels / b.in_channels
    text = f"{kind}_r1_k{b.kernel}_s{b.stride}_e{expand:g}_c{b.out_channels}"
    if b.use_se:
        text += "_se0.25"
    return text + _ACT[b.activation]


def timm_block_args(g: NetworkGeometry) -> List[List[str]]:
    """timm ``arch_def``: the first block, one list per OFA stage, the final 1x1 conv."""
    first = g.first_block
    if first.has_expand or first.use_se or first.mid_channels != first.in_channels:
        raise ConfigError("the first OFA block must be depthwise-separable (no expansion, no SE) for timm")
    stages = [[_block_string(first, "ds")]]
    stages += [[_block_string(b, "ir") for b in stage] for stage in g.stages]
    stages.append([f"cn_r1_k1_s1_c{g.final_expand_channels}"])
    return stages


def timm_config(g: NetworkGeometry, resolution: int, mean, std) -> Dict[str, Any]:
    """Everything timm needs to rebuild the subnet, as JSON (see the module docstring)."""
    strides = g.stem_stride
    for stage in g.stages:
        for b in stage:
            strides *= b.stride
    if 2 * strides // g.stem_stride > 32:   # timm's builder dilates past output stride 32
        raise ConfigError(f"total stride {strides} is too large for timm's MobileNetV3 builder (32 at most)")
    return {
        "format": TIMM_FORMAT,
        "architecture": "MobileNetV3",
        "block_args": timm_block_args(g),
        "act_layer": "hard_swish",
        "stem_stride": int(g.stem_stride),
        "model_args": {"num_classes": int(g.num_classes), "stem_size": int(g.stem_channels), "fix_stem": True,
                       "num_features": int(g.feature_channels), "head_bias": False,
                       "drop_rate": float(g.dropout)},
        "pretrained_cfg": {"input_size": [3, int(resolution), int(resolution)], "mean": [float(m) for m in mean],
                           "std": [float(s) for s in std], "num_classes": int(g.num_classes),
                           "interpolation": "bilinear", "crop_pct": 1.0, "classifier": "classifier"},
    }


def build_timm_model(config: Mapping[str, Any]) -> nn.Module:
    """The (untrained) timm model of a :func:`timm_config` -- what the README's timm-only loader does."""
    from timm.layers import get_act_layer
    from timm.models import MobileNetV3 as TimmMobileNetV3
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models._efficientnet_builder import decode_arch_def, round_channels

    se_layer = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)
    model = TimmMobileNetV3(decode_arch_def(config["block_args"]), act_layer=get_act_layer(config["act_layer"]),
                            se_layer=se_layer, **config["model_args"])
    model.conv_stem.stride = (int(config["stem_stride"]),) * 2
    return model


def _rename(stage_index: int, block_index: int, key: str, first: bool) -> str:
    """Our static block's parameter name -> timm's (``expand.conv`` -> ``conv_pw`` ...)."""
    part, rest = key.split(".", 1)
    if first:   # DepthwiseSeparableConv: conv_dw, bn1, [se], conv_pw, bn2
        names = {"depthwise.conv": "conv_dw", "depthwise.bn": "bn1", "project.conv": "conv_pw", "project.bn": "bn2"}
    else:       # InvertedResidual: conv_pw, bn1, conv_dw, bn2, [se], conv_pwl, bn3
        names = {"expand.conv": "conv_pw", "expand.bn": "bn1", "depthwise.conv": "conv_dw", "depthwise.bn": "bn2",
                 "project.conv": "conv_pwl", "project.bn": "bn3", "se.reduce": "se.conv_reduce",
                 "se.expand": "se.conv_expand"}
    sub, leaf = rest.rsplit(".", 1)
    name = f"{part}.{sub}"
    if name not in names:
        raise KeyError(key)
    return f"blocks.{stage_index}.{block_index}.{names[name]}.{leaf}"


def timm_state_dict(model: MobileNetV3) -> Dict[str, torch.Tensor]:
    """The static subnet's weights and BN statistics under the timm model's names."""
    out: Dict[str, torch.Tensor] = {}
    last = len(model.geometry.stages) + 1
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "stem":
            new = {"conv": "conv_stem", "bn": "bn1"}[parts[1]] + "." + parts[2]
        elif parts[0] == "first_block":
            new = _rename(0, 0, ".".join(parts[1:]), first=True)
        elif parts[0] == "stages":
            new = _rename(int(parts[1]) + 1, int(parts[2]), ".".join(parts[3:]), first=False)
        elif key.startswith("head.final_expand."):
            new = f"blocks.{last}.0." + {"conv": "conv", "bn": "bn1"}[parts[2]] + "." + parts[3]
        elif key.startswith("head.feature_mix.conv."):
            new = "conv_head." + parts[3]
        elif key.startswith("head.classifier."):
            new = "classifier." + parts[2]
        else:
            raise KeyError(f"no timm name for {key}")
        out[new] = value.detach().clone().contiguous()
    return out


def to_timm(model: MobileNetV3, resolution: int, mean, std) -> Tuple[nn.Module, Dict[str, Any]]:
    """(timm ``MobileNetV3`` with the subnet's weights in eval mode, its JSON config)."""
    config = timm_config(model.geometry, resolution, mean, std)
    timm_model = build_timm_model(config)
    state = timm_state_dict(model)
    try:
        timm_model.load_state_dict(state, strict=True)
    except RuntimeError as exc:   # a width timm computes differently (a fractional expand ratio)
        raise ConfigError(f"this subnet does not map onto timm's MobileNetV3 blocks: {str(exc)[:300]}") from exc
    return timm_model.eval(), config
