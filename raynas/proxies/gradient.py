"""Gradient-based proxies: snip, snip_layernorm, grad_norm, grasp, fisher, gradsign.

All follow mohsaied/zero-cost-nas (Abdelfattah et al., ICLR 2021) conventions: train mode,
Conv2d/Linear weights only, one minibatch, values summed over every weight. ``snip_saliency``
exposes the per-weight SNIP maps, e.g. for PreNAS's per-block scores of a ViT supernet.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from raynas.errors import ConfigError
from raynas.proxies.registry import (SCORED_LAYER_TYPES, Batch, LossFn, ProxyContext, register_proxy,
                                     scored_layers)
from raynas.proxies.state import preserved_state

ZERO_COST_NAS = "Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021 (mohsaied/zero-cost-nas)"


def _total(values) -> float:
    """Sum scalar tensors on their device and synchronise once (not once per layer)."""
    values = list(values)
    return float(torch.stack(values).sum().item()) if values else 0.0


def _layer_norm_saliency(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """PreNAS Eq. 13 per weight: |θ ⊙ g| / (‖θ‖₁ ‖g‖₁) (tinyvision/PreNAS 'balance_taylor6');
    zero where the layer gets no gradient."""
    denom = weight.abs().sum() * grad.abs().sum()
    return torch.where(denom > 0, (weight * grad).abs() / denom.clamp_min(torch.finfo(denom.dtype).tiny),
                       torch.zeros_like(weight))


@register_proxy("snip", reference=f"Lee et al., SNIP, ICLR 2019; {ZERO_COST_NAS}")
def snip(ctx: ProxyContext) -> float:
    """SNIP: Σ over Conv2d/Linear weights of |θ ⊙ ∂L/∂θ| (= |∂L/∂mask| at mask = 1)."""
    wg = ctx.weight_grads()
    return _total((w * g).abs().sum() for w, g in zip(wg.weights, wg.grads) if g is not None)


@register_proxy("snip_layernorm", reference="Wang et al., PreNAS, ICML 2023, Eq. 13 (tinyvision/PreNAS)")
def snip_layernorm(ctx: ProxyContext) -> float:
    """Layer-normalised SNIP (PreNAS): Σ_layers Σ|θ ⊙ ∂L/∂θ| / (‖θ‖₁ · ‖∂L/∂θ‖₁) over Conv2d/Linear
    weights, each layer's saliency divided by its weight and gradient L1 norms."""
    wg = ctx.weight_grads()
    return _total(_layer_norm_saliency(w, g).sum() for w, g in zip(wg.weights, wg.grads) if g is not None)


@register_proxy("grad_norm", reference=ZERO_COST_NAS)
def grad_norm(ctx: ProxyContext) -> float:
    """grad_norm: Σ over Conv2d/Linear layers of the Frobenius norm ‖∂L/∂W‖₂ of the weight grad."""
    wg = ctx.weight_grads()
    return _total(g.norm() for g in wg.grads if g is not None)


@register_proxy("grasp", reference=f"Wang et al., GraSP, ICLR 2020; {ZERO_COST_NAS}")
def grasp(ctx: ProxyContext) -> float:
    """GraSP: Σ over Conv2d/Linear weights of -θ ⊙ (H g), g = ∂L/∂θ (detached), H the Hessian of
    L (double backward), temperature T = 1 as in zero-cost-nas."""
    wg = ctx.weight_grads(grasp=True)
    return _total((-w * h).sum() for w, h in zip(wg.weights, wg.hessian_grad) if h is not None)


@register_proxy("fisher", reference=f"Turner et al., BlockSwap, ICLR 2020; {ZERO_COST_NAS}")
def fisher(ctx: ProxyContext) -> float:
    """Fisher: per output channel k of each Conv2d/Linear, F_k = ½ mean_n (Σ_spatial a ⊙ ∂L/∂a)²
    with a the layer's output; as zero-cost-nas broadcasts F_k to the k-th filter's weights
    before summing, the score is Σ_layers Σ_k F_k · (weights per output channel)."""
    wg = ctx.weight_grads(fisher=True)
    return _total(wg.fisher[name].abs().sum() * math.prod(weight.shape[1:])
                  for name, weight in zip(wg.names, wg.weights) if name in wg.fisher)


# ---------------------------------------------------------------------- gradsign
def _sign_sums_vmap(ctx: ProxyContext, names: List[str], chunk: int) -> Dict[str, torch.Tensor]:
    from torch.func import functional_call, grad, vmap

    model = ctx.model
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    scored = {n: params[n].detach() for n in names}
    rest = {n: p.detach() for n, p in params.items() if n not in scored}
    targets = ctx.targets if ctx.targets is not None else torch.zeros(
        len(ctx.inputs), dtype=torch.long, device=ctx.device)

    def sample_loss(w: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**rest, **w}, buffers), (x.unsqueeze(0),))
        return ctx.objective(out, y.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    sums = {n: torch.zeros_like(scored[n]) for n in names}
    for start in range(0, len(ctx.inputs), chunk):
        grads = per_sample(scored, ctx.inputs[start:start + chunk], targets[start:start + chunk])
        for n in names:
            sums[n] += torch.sign(grads[n]).sum(0)
    return sums


def _sign_sums_loop(ctx: ProxyContext, names: List[str]) -> Dict[str, torch.Tensor]:
    params = dict(ctx.model.named_parameters())
    weights = [params[n] for n in names]
    sums = {n: torch.zeros_like(params[n]) for n in names}
    for i in range(len(ctx.inputs)):
        t = None if ctx.targets is None else ctx.targets[i:i + 1]
        loss = ctx.objective(ctx.model(ctx.inputs[i:i + 1]), t)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                sums[n] += torch.sign(g)
    return sums


@register_proxy("gradsign", reference="Zhang & Jia, GradSign, ICLR 2022 (cmu-catalyst/GradSign)")
def gradsign(ctx: ProxyContext) -> float:
    """GradSign: Σ_k |Σ_i sign(∂L(x_i)/∂θ_k)| over Conv2d/Linear weights θ_k, with per-sample
    gradients (each sample a batch of one, BN on its own statistics) at the initial weights."""
    model = ctx.model
    model.train()
    names = [f"{n}.weight" if n else "weight" for n, _ in scored_layers(model)]
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad_(True)
    method = ctx.option("gradsign_method", "vmap")
    if method == "vmap":
        # running statistics cannot be updated inside vmap; with them off, train-mode BN uses the
        # sample's own statistics exactly as the reference's batch-of-one forward does
        bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        for m in bns:
            m.track_running_stats = False
        try:
            sums = _sign_sums_vmap(ctx, names, int(ctx.option("gradsign_chunk", 64)))
        except (RuntimeError, NotImplementedError) as exc:
            warnings.warn(f"gradsign: per-sample gradients by vmap failed ({exc}); "
                          "falling back to one backward per sample", RuntimeWarning)
            method = "loop"
        finally:
            for m in bns:
                m.track_running_stats = True
    if method == "loop":
        sums = _sign_sums_loop(ctx, names)
    elif method != "vmap":
        raise ValueError(f"gradsign_method must be 'vmap' or 'loop', got {method!r}")
    return _total(torch.nansum(s.abs()) for s in sums.values())


# ---------------------------------------------------------------------- per-layer maps
def _saliency_names(model: nn.Module, layer_types: Tuple[type, ...], include: Optional[Callable[[str], bool]],
                    param_names: Optional[Sequence[str]]) -> List[str]:
    named = dict(model.named_parameters())
    if param_names is not None:
        unknown = [n for n in param_names if n not in named]
        if unknown:
            raise ConfigError(f"snip_saliency: the model has no parameters {unknown[:3]}; "
                              f"e.g. it has {list(named)[:5]}")
        return list(param_names)
    names = [f"{n}.weight" if n else "weight" for n, m in model.named_modules() if isinstance(m, layer_types)]
    return [n for n in names if n in named and (include is None or include(n))]


def snip_saliency_pair(model: nn.Module, batch: Batch, loss_fn: LossFn = F.cross_entropy, *,
                       layer_types: Tuple[type, ...] = SCORED_LAYER_TYPES,
                       include: Optional[Callable[[str], bool]] = None,
                       param_names: Optional[Sequence[str]] = None
                       ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """``(plain, layer_normalised)`` SNIP maps of :func:`snip_saliency` from one forward and
    backward pass (PreNAS needs both: normalised block scores and plain subnet scores)."""
    ctx = ProxyContext(model, batch, loss_fn)
    named = dict(model.named_parameters())
    names = _saliency_names(model, layer_types, include, param_names)
    plain: Dict[str, torch.Tensor] = {}
    normalised: Dict[str, torch.Tensor] = {}
    with preserved_state(model):
        model.train()
        params = [named[n] for n in names]
        for p in params:
            p.requires_grad_(True)
        loss = ctx.objective(model(ctx.inputs))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for name, p, g in zip(names, params, grads):
            w = p.detach().clone()
            g = torch.zeros_like(w) if g is None else g.detach()
            plain[name] = (w * g).abs()
            normalised[name] = _layer_norm_saliency(w, g)
    return plain, normalised


def snip_saliency(model: nn.Module, batch: Batch, loss_fn: LossFn = F.cross_entropy, *,
                  layer_norm: bool = False, layer_types: Tuple[type, ...] = SCORED_LAYER_TYPES,
                  include: Optional[Callable[[str], bool]] = None,
                  param_names: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
    """Per-weight SNIP saliency, keyed by parameter name (``"blocks.3.attn.qkv.weight"``).

    Each map is ``|θ ⊙ ∂L/∂θ|`` (shape of the parameter); with ``layer_norm`` it is divided by
    ``‖θ‖₁ · ‖∂L/∂θ‖₁`` of that whole tensor (PreNAS Eq. 13), so slices of it (heads, MLP
    columns) sum to PreNAS's block scores. The tensors scored are ``param_names`` if given,
    else the ``weight`` of every module of ``layer_types`` whose weight name passes
    ``include``. ``loss_fn=None`` uses the data-free sum-of-logits objective (PreNAS with
    :func:`raynas.proxies.data_free_batch`). The model is left unchanged.
    """
    plain, normalised = snip_saliency_pair(model, batch, loss_fn, layer_types=layer_types,
                                           include=include, param_names=param_names)
    return normalised if layer_norm else plain


def group_scores(saliency: Dict[str, torch.Tensor], group_of: Callable[[str], Optional[str]]) -> Dict[str, float]:
    """Sum saliency maps per group (``group_of(param_name)`` -> group, None to skip), e.g.
    per transformer block with ``lambda n: ".".join(n.split(".")[:2])``."""
    out: Dict[str, float] = {}
    for name, values in saliency.items():
        group = group_of(name)
        if group is not None:
            out[group] = out.get(group, 0.0) + float(values.sum().item())
    return out


def layer_scores(saliency: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """One number per layer: the sum of its saliency map."""
    return group_scores(saliency, lambda name: name)


__all__: Sequence[str] = ("snip", "snip_layernorm", "grad_norm", "grasp", "fisher", "gradsign",
                          "snip_saliency", "snip_saliency_pair", "group_scores", "layer_scores")
