"""Elastic pre-norm transformer block shared by the ViT and hybrid supernets, its static timm
counterpart, and the analytic cost of one block.

Weight entanglement: every smaller choice uses the leading slice of the largest weight.

QKV row layout (head-major): the fused ``qkv`` weight holds, for each head j in turn, its
``head_dim`` query rows, then its key rows, then its value rows:
``[q_0 k_0 v_0 | q_1 k_1 v_1 | ...]``. A subnet with ``h`` heads therefore uses the leading
``3 * h * head_dim`` rows (and the leading ``e`` columns): a view, never a copy, in every step.
timm's ``Attention.qkv`` is block-major (``[q_0..q_h | k_0..k_h | v_0..v_h]``); export reorders
the rows once (:func:`head_major_to_timm`).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm
from timm.layers import drop_path as timm_drop_path
from timm.models.vision_transformer import Attention, Block, init_weights_vit_timm

from spaces.layers.export import ElasticLayer, prefixed
from spaces.layers.slicing import leading

#: timm's ViT LayerNorm epsilon; the supernet uses the same so exported outputs match
NORM_EPS = 1e-6


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` that launches nothing when it would be the identity."""
    return F.dropout(x, p, True) if training and p > 0 else x


def width_scaled(rate: float, width: int, max_width: int) -> float:
    """Dropout scaled with the active width (AutoFormer): narrower subnets get less dropout."""
    return float(rate) * width / max_width


class LinearWeights(nn.Module, ElasticLayer):
    """Holds a full-size weight and bias under timm's parameter names (``weight``, ``bias``);
    elastic callers slice them inside their own ``forward``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.trunc_normal_(self.weight, std=0.02)

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> nn.Linear:
        return nn.Linear(**config)

    def static_config(self, *, in_features: int, out_features: int) -> Dict[str, Any]:
        return {"in_features": int(in_features), "out_features": int(out_features),
                "bias": self.bias is not None}

    def static_state_dict(self, *, in_features: int, out_features: int) -> Dict[str, torch.Tensor]:
        out = {"weight": leading(self.weight, out_features, in_features)}
        if self.bias is not None:
            out["bias"] = leading(self.bias, out_features)
        return out


def head_major_to_timm(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder head-major qkv rows (or bias) ``[q_j k_j v_j]_j`` into timm's ``[q | k | v]``."""
    rest = qkv.shape[1:]
    return qkv.reshape(heads, 3, -1, *rest).transpose(0, 1).reshape(qkv.shape)


class ElasticAttention(nn.Module):
    """Parameter holder for multi-head self-attention with head-major qkv rows."""

    def __init__(self, max_dim: int, max_heads: int, head_dim: int, qkv_bias: bool) -> None:
        super().__init__()
        self.max_heads, self.head_dim = max_heads, head_dim
        self.qkv = LinearWeights(max_dim, 3 * max_heads * head_dim, bias=qkv_bias)
        self.proj = LinearWeights(max_heads * head_dim, max_dim)

    def qkv_weight(self, heads: int, dim: int) -> torch.Tensor:
        return leading(self.qkv.weight, 3 * heads * self.head_dim, dim)

    def qkv_bias(self, heads: int):
        b = self.qkv.bias
        return None if b is None else leading(b, 3 * heads * self.head_dim)


class ElasticMlp(nn.Module):
    def __init__(self, max_dim: int, max_hidden: int) -> None:
        super().__init__()
        self.fc1 = LinearWeights(max_dim, max_hidden)
        self.fc2 = LinearWeights(max_hidden, max_dim)


class ElasticLayerNorm(nn.LayerNorm, ElasticLayer):
    """LayerNorm over the last ``x.shape[-1]`` features with the leading slice of its affine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x.shape[-1]
        return F.layer_norm(x, (e,), leading(self.weight, e), leading(self.bias, e), self.eps)

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> nn.LayerNorm:
        return LayerNorm(config["dim"], eps=config["eps"])

    def static_config(self, *, dim: int) -> Dict[str, Any]:
        return {"dim": int(dim), "eps": self.eps}

    def static_state_dict(self, *, dim: int) -> Dict[str, torch.Tensor]:
        return {"weight": leading(self.weight, dim), "bias": leading(self.bias, dim)}


class ElasticTransformerBlock(nn.Module, ElasticLayer):
    """Pre-norm ViT block: the embed width comes from the input; heads and MLP ratio are set by
    :meth:`configure`. Parameter names mirror timm's ``Block`` so export copies by name."""

    def __init__(self, max_dim: int, max_heads: int, head_dim: int, max_mlp_ratio: float,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.max_dim, self.head_dim = max_dim, head_dim
        self.norm1 = ElasticLayerNorm(max_dim, eps=NORM_EPS)
        self.attn = ElasticAttention(max_dim, max_heads, head_dim, qkv_bias)
        self.norm2 = ElasticLayerNorm(max_dim, eps=NORM_EPS)
        self.mlp = ElasticMlp(max_dim, int(max_dim * max_mlp_ratio))
        self.drop_rate, self.attn_drop_rate = float(drop_rate), float(attn_drop_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.num_heads, self.mlp_ratio = max_heads, float(max_mlp_ratio)

    def configure(self, num_heads: int, mlp_ratio: float) -> None:
        self.num_heads, self.mlp_ratio = int(num_heads), float(mlp_ratio)

    def _residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_path_rate > 0:
            branch = timm_drop_path(branch, self.drop_path_rate, True)
        return x + branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, e = x.shape
        heads, a = self.num_heads, self.num_heads * self.head_dim
        hidden = int(e * self.mlp_ratio)
        p_drop = width_scaled(self.drop_rate, e, self.max_dim) if self.training else 0.0
        p_attn = width_scaled(self.attn_drop_rate, e, self.max_dim) if self.training else 0.0
        attn, mlp = self.attn, self.mlp

        h = self.norm1(x)
        qkv = F.linear(h, attn.qkv_weight(heads, e), attn.qkv_bias(heads))
        q, k, v = qkv.view(B, N, heads, 3, self.head_dim).permute(3, 0, 2, 1, 4).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v, dropout_p=p_attn)
        h = h.transpose(1, 2).reshape(B, N, a)
        h = F.linear(h, leading(attn.proj.weight, e, a), leading(attn.proj.bias, e))
        x = self._residual(x, dropout(h, p_drop, self.training))

        h = self.norm2(x)
        h = F.linear(h, leading(mlp.fc1.weight, hidden, e), leading(mlp.fc1.bias, hidden))
        h = dropout(F.gelu(h), p_drop, self.training)
        h = F.linear(h, leading(mlp.fc2.weight, e, hidden), leading(mlp.fc2.bias, e))
        return self._residual(x, dropout(h, p_drop, self.training))

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> Block:
        return timm_block(**config)

    def static_config(self, *, dim: int, num_heads: int, mlp_ratio: float) -> Dict[str, Any]:
        return {"dim": int(dim), "num_heads": int(num_heads), "head_dim": self.head_dim,
                "mlp_ratio": float(mlp_ratio), "qkv_bias": self.attn.qkv.bias is not None,
                "drop_rate": self.drop_rate, "attn_drop_rate": self.attn_drop_rate,
                "drop_path_rate": self.drop_path_rate}

    def static_state_dict(self, *, dim: int, num_heads: int, mlp_ratio: float) -> Dict[str, torch.Tensor]:
        """The sliced weights under timm ``Block``'s names (qkv rows reordered to timm's)."""
        heads, a = int(num_heads), int(num_heads) * self.head_dim
        hidden = int(dim * float(mlp_ratio))
        attn, mlp = self.attn, self.mlp
        out = {
            **prefixed("norm1.", self.norm1.static_state_dict(dim=dim)),
            "attn.qkv.weight": head_major_to_timm(attn.qkv_weight(heads, dim), heads),
            **prefixed("attn.proj.", attn.proj.static_state_dict(in_features=a, out_features=dim)),
            **prefixed("norm2.", self.norm2.static_state_dict(dim=dim)),
            **prefixed("mlp.fc1.", mlp.fc1.static_state_dict(in_features=dim, out_features=hidden)),
            **prefixed("mlp.fc2.", mlp.fc2.static_state_dict(in_features=hidden, out_features=dim)),
        }
        if attn.qkv.bias is not None:
            out["attn.qkv.bias"] = head_major_to_timm(attn.qkv_bias(heads), heads)
        return out


def timm_block(dim: int, num_heads: int, head_dim: int, mlp_ratio: float, qkv_bias: bool = True,
               drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
               drop_path_rate: float = 0.0) -> Block:
    """A timm ``Block`` with ``num_heads`` heads of ``head_dim`` (QKV dim may differ from dim)."""
    block = Block(dim, num_heads=1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=drop_path_rate, norm_layer=LayerNorm)
    # timm's Block cannot pass attn_head_dim through, so its default attention (head dim =
    # dim / heads) is swapped for one with the fixed head dim
    block.attn = Attention(dim, num_heads=num_heads, attn_head_dim=head_dim, qkv_bias=qkv_bias,
                           attn_drop=attn_drop_rate, proj_drop=drop_rate, norm_layer=LayerNorm)
    block.apply(init_weights_vit_timm)
    return block


def transformer_block_cost(dim: int, tokens: int, num_heads: int, head_dim: int,
                           mlp_ratio: float, qkv_bias: bool = True) -> Dict[str, int]:
    """Parameters and MACs of one pre-norm block on ``tokens`` tokens of width ``dim``.

    MACs count the linear layers and both attention matmuls (QK^T and AV), as FlopCounterMode
    does; norms, softmax and activations are not counted.
    """
    a, hidden = num_heads * head_dim, int(dim * mlp_ratio)
    params = (2 * dim                                  # norm1
              + dim * 3 * a + (3 * a if qkv_bias else 0)  # qkv
              + a * dim + dim                          # proj
              + 2 * dim                                # norm2
              + dim * hidden + hidden + hidden * dim + dim)  # fc1, fc2
    macs = tokens * (dim * 3 * a + a * dim + 2 * dim * hidden) + 2 * tokens * tokens * a
    return {"params": params, "macs": macs}


__all__ = ["ElasticTransformerBlock", "NORM_EPS", "timm_block", "transformer_block_cost",
           "width_scaled"]
