"""The weight-entangled ViT supernet of :class:`spaces.vit.ElasticViTSpace` and its timm export.

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.{i}.attn.qkv`` ...), so a subnet's state dict is the supernet's with
every tensor cut to its leading slice, and ``export`` is ``build_static`` plus a strict load.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from raynas.arch import Arch
from raynas.errors import DataError
from raynas.supernet import Supernet
from spaces.layers.export import build_and_load, prefixed
from spaces.layers.slicing import leading
from spaces.layers.transformer import (NORM_EPS, ElasticTransformerBlock, ElasticLayerNorm,
                                       LinearWeights, dropout, timm_block, width_scaled)


def drop_path_rates(rate: float, supernet_depth: int) -> List[float]:
    """Stochastic depth growing linearly over the supernet's layers (AutoFormer, timm)."""
    return [float(r) for r in np.linspace(0.0, float(rate), supernet_depth)]


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)


class ElasticViTSupernet(Supernet):
    """The largest ViT of the space; ``activate(arch)`` selects embed dim, depth, heads, MLP."""

    def __init__(self, space, num_classes: int, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> None:
        super().__init__(space)
        E, depth = space.supernet_embed_dim, space.supernet_depth
        self.drop_rate, self.attn_drop_rate = float(drop_rate), float(attn_drop_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.num_classes = int(num_classes)
        num_patches = (space.img_size // space.patch_size) ** 2
        self.patch_embed = _PatchEmbed(space.in_chans, E, space.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, E))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, E))
        rates = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            ElasticTransformerBlock(E, space.supernet_num_heads, space.head_dim,
                                    space.supernet_mlp_ratio, space.qkv_bias, drop_rate,
                                    attn_drop_rate, rates[i]) for i in range(depth))
        self.norm = ElasticLayerNorm(E, eps=NORM_EPS)
        self.head = LinearWeights(E, self.num_classes)
        nn.init.zeros_(self.head.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self._embed_dim, self._depth = E, depth
        self.activate(space.largest())

    @property
    def build_options(self) -> Dict[str, float]:
        """Keyword arguments of ``space.build_supernet`` that rebuild this supernet."""
        return {"drop_rate": self.drop_rate, "attn_drop_rate": self.attn_drop_rate,
                "drop_path_rate": self.drop_path_rate}

    def _apply_arch(self, arch: Arch) -> None:
        self._embed_dim, self._depth = arch["embed_dim"], arch["depth"]
        for block, heads, ratio in zip(self.blocks, arch["num_heads"], arch["mlp_ratio"]):
            block.configure(heads, ratio)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the final norm, ``(batch, 1 + patches, embed_dim)``, like timm's."""
        size = self.space.img_size
        if x.dim() != 4 or tuple(x.shape[-2:]) != (size, size):
            raise DataError(f"space '{self.space.name}' takes images of {size}x{size}, got a "
                            f"tensor of shape {tuple(x.shape)}; resize the inputs")
        e, proj = self._embed_dim, self.patch_embed.proj
        x = F.conv2d(x, leading(proj.weight, e), leading(proj.bias, e), stride=proj.stride)
        x = x.flatten(2).transpose(1, 2)
        cls_token = leading(self.cls_token, 1, 1, e)
        x = torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + leading(self.pos_embed, 1, self.pos_embed.shape[1], e)
        x = dropout(x, width_scaled(self.drop_rate, e, self.space.supernet_embed_dim),
                    self.training)
        for block in self.blocks[:self._depth]:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        e = x.shape[-1]
        return F.linear(x[:, 0], leading(self.head.weight, self.num_classes, e), self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def static_state_dict(self, arch: Arch) -> Dict[str, torch.Tensor]:
        """The subnet's weights under the exported timm model's names (views)."""
        arch = self.space.validate(arch)
        e, proj = arch["embed_dim"], self.patch_embed.proj
        out = {
            "cls_token": leading(self.cls_token, 1, 1, e),
            "pos_embed": leading(self.pos_embed, 1, self.pos_embed.shape[1], e),
            "patch_embed.proj.weight": leading(proj.weight, e), "patch_embed.proj.bias": leading(proj.bias, e),
            **prefixed("norm.", self.norm.static_state_dict(dim=e)),
            **prefixed("head.", self.head.static_state_dict(in_features=e, out_features=self.num_classes)),
        }
        for i, (heads, ratio) in enumerate(zip(arch["num_heads"], arch["mlp_ratio"])):
            out.update(prefixed(f"blocks.{i}.", self.blocks[i].static_state_dict(
                dim=e, num_heads=heads, mlp_ratio=ratio)))
        return out

    def export(self, arch: Arch) -> VisionTransformer:
        """A timm ``VisionTransformer`` holding the subnet's weights (same device and dtype)."""
        arch = self.space.validate(arch)
        def build() -> VisionTransformer:
            return build_timm_vit(self.space, arch, self.num_classes, drop_rate=self.drop_rate,
                                  attn_drop_rate=self.attn_drop_rate,
                                  drop_path_rate=self.drop_path_rate)

        return build_and_load(build, self.static_state_dict(arch), like=self.pos_embed)


def build_timm_vit(space, arch: Arch, num_classes: int, drop_rate: float = 0.0,
                   attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> VisionTransformer:
    """An untrained timm ``VisionTransformer`` for a validated arch: timm ``Block``s built per
    layer with that layer's heads (fixed head dim) and MLP ratio. Dropout is scaled by
    ``embed_dim / supernet_embed_dim`` and stochastic depth follows the supernet's schedule, so a
    stand-alone model trains like its subnet did."""
    e, depth = arch["embed_dim"], arch["depth"]
    drop = width_scaled(drop_rate, e, space.supernet_embed_dim)
    attn_drop = width_scaled(attn_drop_rate, e, space.supernet_embed_dim)
    model = VisionTransformer(
        img_size=space.img_size, patch_size=space.patch_size, in_chans=space.in_chans,
        num_classes=num_classes, global_pool="token", embed_dim=e, depth=0, num_heads=1,
        qkv_bias=space.qkv_bias, pos_drop_rate=drop, proj_drop_rate=drop,
        attn_drop_rate=attn_drop)
    rates = drop_path_rates(drop_path_rate, space.supernet_depth)
    model.blocks = nn.Sequential(*[
        timm_block(e, heads, space.head_dim, ratio, space.qkv_bias, drop, attn_drop, rates[i])
        for i, (heads, ratio) in enumerate(zip(arch["num_heads"], arch["mlp_ratio"]))])
    model.feature_info = [dict(module=f"blocks.{i}", num_chs=e, reduction=space.patch_size)
                          for i in range(depth)]
    # what timm.data.resolve_data_config reads (normalisation stays the user's choice)
    model.pretrained_cfg = model.default_cfg = {
        "input_size": (space.in_chans, space.img_size, space.img_size),
        "num_classes": num_classes, "crop_pct": 1.0}
    return model
