"""Supernet and static network of the hybrid conv-vs-attention space.

Every layer holds both ops, F (elastic MBConv) and G (elastic transformer block on the map's
tokens), and a learned logit whose sigmoid is α, the probability of choosing F. Modes:

* ``"arch"``: each layer runs the op the activated arch chose (pool, search, export).
* ``"convex"``: ``α·F(x) + (1−α)·G(x)`` (both ops run; α trained through the mixture).
* ``"uniform"``: F or G with probability 1/2 each (α untouched).
* ``"weighted"`` (the founding work): s ~ Bernoulli(α) per layer and forward; the output is
  ``(α + (1−α).detach())·F(x)`` if s = 1 else ``(β + (1−β).detach())·G(x)`` with β = 1−α. The
  factor is 1 in the forward pass, so the output is the sampled op's, while ∂out/∂α = F(x)
  (resp. −G(x) through β).

Draws come from a numpy generator derived from ``(seed, step)`` (:meth:`HybridSupernet.set_step`),
so every data-parallel rank picks the same ops at the same step. In the mixed modes the two ops
of a layer run at the widths set by :meth:`HybridSupernet.set_widths` (the largest by default)
or by the last activated arch for the op it named.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm

from raynas.arch import Arch
from raynas.errors import ConfigError, DataError
from raynas.rng import derive_rng
from raynas.supernet import Supernet
from spaces.hybrid import ATTN, CONV
from spaces.layers import ElasticMBConv, MBConv, build_and_load, prefixed
from spaces.layers.transformer import NORM_EPS, ElasticTransformerBlock, timm_block
from spaces.vit_supernet import drop_path_rates

MODES = ("arch", "convex", "uniform", "weighted")


class Stem(nn.Module):
    """3x3 convolution (stride ``stem_stride``), BatchNorm, SiLU."""

    def __init__(self, in_chans: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.bn(self.conv(x)))


def _map_to_tokens(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    tokens = block(x.flatten(2).transpose(1, 2))
    return tokens.transpose(1, 2).reshape(B, C, H, W)


class TokenBlock(nn.Module):
    """Static G: a timm ``Block`` applied to the feature map's ``H*W`` tokens."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _map_to_tokens(self.block, x)


class ElasticTokenBlock(TokenBlock):
    """Elastic G: :class:`ElasticTransformerBlock` on the feature map's tokens."""

    block: ElasticTransformerBlock


class HybridLayer(nn.Module):
    """Both candidate ops of one layer and the logit of α = P(choose the convolution)."""

    def __init__(self, space, drop_path_rate: float) -> None:
        super().__init__()
        C = space.channels
        # in = out width, stride 1, SiLU, no SE; hidden width exactly C * expand ratio
        self.conv = ElasticMBConv(C, C, 1, "silu", False, (space.kernel_size,), space.expand_ratios,
                                  channel_divisor=1)
        self.attn = ElasticTokenBlock(ElasticTransformerBlock(
            C, space.num_heads[-1], space.head_dim, space.mlp_ratios[-1], space.qkv_bias,
            drop_path_rate=drop_path_rate))
        self.alpha_logit = nn.Parameter(torch.zeros(()))  # α = 0.5: no prior preference
        self.op = CONV

    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit)

    def forward(self, x: torch.Tensor, mode: str, use_conv: Optional[bool]) -> torch.Tensor:
        if mode == "arch":
            return self.conv(x) if self.op == CONV else self.attn(x)
        if mode == "convex":
            a = self.alpha()
            return a * self.conv(x) + (1 - a) * self.attn(x)
        if mode == "uniform":
            return self.conv(x) if use_conv else self.attn(x)
        a = self.alpha()
        if use_conv:
            # 1 + (α − α.detach()) is α + (1 − α).detach() written so the forward factor is
            # exactly 1.0 in floating point; its gradient w.r.t. α is 1
            return (1 + (a - a.detach())) * self.conv(x)
        b = 1 - a
        return (1 + (b - b.detach())) * self.attn(x)


class HybridSupernet(Supernet):
    """Weight-sharing hybrid network; see the module docstring for the training modes."""

    def __init__(self, space, num_classes: int, mode: str = "arch", seed: int = 0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__(space)
        C, R = space.channels, space.feature_size
        self.num_classes = int(num_classes)
        self.drop_path_rate = float(drop_path_rate)
        self.stem = Stem(space.in_chans, C, space.stem_stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, C, R, R))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        rates = drop_path_rates(drop_path_rate, space.num_layers)
        self.layers = nn.ModuleList(HybridLayer(space, rates[i]) for i in range(space.num_layers))
        self.norm = LayerNorm(C, eps=NORM_EPS)
        self.head = nn.Linear(C, self.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.last_ops: List[str] = []
        self.mode, self.seed, self.step = "arch", 0, 0
        self._rng: np.random.Generator = derive_rng(0, "hybrid-ops", 0)
        self.set_mode(mode, seed)
        self.activate(space.largest())

    @property
    def build_options(self) -> Dict[str, object]:
        """Keyword arguments of ``space.build_supernet`` that rebuild this supernet."""
        return {"mode": self.mode, "seed": self.seed, "drop_path_rate": self.drop_path_rate}

    # ------------------------------------------------------------------ configuration
    def set_mode(self, mode: str, seed: Optional[int] = None) -> None:
        """Choose how layers pick their op; ``seed`` (if given) reseeds the op draws at step 0."""
        if mode not in MODES:
            raise ConfigError(f"unknown hybrid training mode {mode!r}; choose one of {MODES}")
        self.mode = mode
        if seed is not None:
            self.seed = int(seed)
            self.set_step(0)

    def set_step(self, step: int) -> None:
        """Derive the op draws from ``(seed, step)``: call once per training step on every rank."""
        self.step = int(step)
        self._rng = derive_rng(self.seed, "hybrid-ops", self.step)

    def last_forward_ops(self) -> List[str]:
        """The op every layer ran in the last forward (drawn in the uniform/weighted modes)."""
        return list(self.last_ops)

    @contextlib.contextmanager
    def arch_mode(self) -> Iterator[None]:
        """Run the activated arch's ops (mode "arch") within the block, then the mode before."""
        mode = self.mode
        if mode == "arch":
            yield
            return
        self.set_mode("arch")
        try:
            yield
        finally:
            self.set_mode(mode)

    def _apply_arch(self, arch: Arch) -> None:
        for layer, spec in zip(self.layers, arch["layers"]):
            layer.op = spec["op"]
            if spec["op"] == CONV:
                layer.conv.configure(self.space.kernel_size, spec["expand_ratio"])
            else:
                layer.attn.block.configure(spec["num_heads"], spec["mlp_ratio"])

    def set_widths(self, expand_ratio: Optional[Sequence[int]] = None,
                   num_heads: Optional[Sequence[int]] = None,
                   mlp_ratio: Optional[Sequence[float]] = None) -> None:
        """Per-layer widths of both ops for the mixed modes (lists of ``num_layers`` values)."""
        widths = self.space.validate_widths(expand_ratio, num_heads, mlp_ratio)
        for i, layer in enumerate(self.layers):
            if "expand_ratio" in widths:
                layer.conv.configure(self.space.kernel_size, widths["expand_ratio"][i])
            block = layer.attn.block
            block.configure(widths.get("num_heads", [block.num_heads] * len(self.layers))[i],
                            widths.get("mlp_ratio", [block.mlp_ratio] * len(self.layers))[i])

    # ------------------------------------------------------------------ α
    def alpha_parameters(self) -> List[nn.Parameter]:
        """The α logits: give them their own optimizer parameter group."""
        return [layer.alpha_logit for layer in self.layers]

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every parameter except the α logits."""
        alphas = {id(p) for p in self.alpha_parameters()}
        return [p for p in self.parameters() if id(p) not in alphas]

    def alpha_values(self) -> List[float]:
        """Current α per layer (probability of the convolution), for logs and trajectories."""
        with torch.no_grad():
            return [float(v) for v in torch.sigmoid(torch.stack(self.alpha_parameters())).cpu()]

    def derive_arch(self) -> Arch:
        """The arch taking F where α > 0.5 (else G), each op at its current widths."""
        layers = []
        for layer, a in zip(self.layers, self.alpha_values()):
            if a > 0.5:
                layers.append({"op": CONV, "expand_ratio": layer.conv.active_expand_ratio})
            else:
                block = layer.attn.block
                layers.append({"op": ATTN, "num_heads": block.num_heads,
                               "mlp_ratio": block.mlp_ratio})
        return self.space.validate({"layers": layers})

    def draw_ops(self) -> List[bool]:
        """One Bernoulli draw per layer from the step's generator (True = convolution)."""
        n = len(self.layers)
        probs = [0.5] * n if self.mode == "uniform" else self.alpha_values()
        draws = self._rng.random(n)
        return [bool(u < p) for u, p in zip(draws, probs)]

    # ------------------------------------------------------------------ forward and export
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.space.img_size
        if x.dim() != 4 or tuple(x.shape[-2:]) != (size, size):
            raise DataError(f"space '{self.space.name}' takes images of {size}x{size}, got a "
                            f"tensor of shape {tuple(x.shape)}; resize the inputs")
        if self.mode in ("uniform", "weighted"):
            use_conv: List[Optional[bool]] = list(self.draw_ops())
            self.last_ops = [CONV if c else ATTN for c in use_conv]
        else:
            use_conv = [None] * len(self.layers)
            self.last_ops = [layer.op for layer in self.layers] if self.mode == "arch" else []
        x = self.stem(x) + self.pos_embed
        for layer, conv in zip(self.layers, use_conv):
            x = layer(x, self.mode, conv)
        return self.head(self.norm(x.mean(dim=(2, 3))))

    def static_state_dict(self, arch: Arch) -> Dict[str, torch.Tensor]:
        """The subnet's weights and BN statistics under :class:`HybridNet`'s names (views)."""
        arch = self.space.validate(arch)
        out = {**prefixed("stem.", self.stem.state_dict()), **prefixed("norm.", self.norm.state_dict()),
               **prefixed("head.", self.head.state_dict()), "pos_embed": self.pos_embed}
        for i, (layer, spec) in enumerate(zip(self.layers, arch["layers"])):
            if spec["op"] == CONV:
                part = prefixed(f"layers.{i}.", layer.conv.static_state_dict(
                    kernel=self.space.kernel_size, expand_ratio=spec["expand_ratio"]))
            else:
                part = prefixed(f"layers.{i}.block.", layer.attn.block.static_state_dict(
                    dim=self.space.channels, num_heads=spec["num_heads"], mlp_ratio=spec["mlp_ratio"]))
            out.update(part)
        return out

    def export(self, arch: Arch) -> "HybridNet":
        """A :class:`HybridNet` with the subnet's weights and BN statistics."""
        arch = self.space.validate(arch)
        return build_and_load(lambda: HybridNet(self.space, arch, self.num_classes,
                                                self.drop_path_rate),
                              self.static_state_dict(arch), like=self.pos_embed)


class HybridNet(nn.Module):
    """Static network of one hybrid arch: stem, position embedding, one op per layer, head."""

    def __init__(self, space, arch: Arch, num_classes: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        C, R = space.channels, space.feature_size
        self.arch, self.num_classes = arch, int(num_classes)
        self.stem = Stem(space.in_chans, C, space.stem_stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, C, R, R))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        rates = drop_path_rates(drop_path_rate, space.num_layers)
        layers: List[nn.Module] = []
        for i, spec in enumerate(arch["layers"]):
            if spec["op"] == CONV:
                layers.append(MBConv(space.conv_geometry(spec["expand_ratio"])))
            else:
                layers.append(TokenBlock(timm_block(C, spec["num_heads"], space.head_dim,
                                                    spec["mlp_ratio"], space.qkv_bias,
                                                    drop_path_rate=rates[i])))
        self.layers = nn.ModuleList(layers)
        self.norm = LayerNorm(C, eps=NORM_EPS)
        self.head = nn.Linear(C, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x.mean(dim=(2, 3))))
