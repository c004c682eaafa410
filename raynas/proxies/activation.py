"""Activation / input-Jacobian proxies: naswot (Mellor et al.) and jacob_cov."""
from __future__ import annotations

import math
from typing import Any, List

import torch
import torch.nn as nn

from raynas.errors import ConfigError
from raynas.proxies.registry import ProxyContext, logits_of, register_proxy


def _relu_modules(model: nn.Module) -> List[nn.Module]:
    # the reference selects modules by "ReLU" in the type name (ReLU, ReLU6, LeakyReLU, ...)
    return [m for m in model.modules() if "ReLU" in type(m).__name__]


def relu_code_kernel(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """K_H of Mellor et al. (2021): K[i, j] = Σ over ReLU units of [c_i = c_j], c the binary code
    (pre-activation > 0) of sample i; i.e. N_units - Hamming distance. float64, N x N."""
    relus = _relu_modules(model)
    if not relus:
        raise ConfigError("naswot needs nn.ReLU modules (it reads their binary activation codes); "
                          f"{type(model).__name__} has none")
    n = inputs.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=inputs.device)

    def count(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        x = args[0] if isinstance(args, tuple) else args
        # after an in-place ReLU the input holds relu(x), whose sign pattern (> 0) is the same
        codes = (x.detach().reshape(x.shape[0], -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.t()).add_((1.0 - codes) @ (1.0 - codes).t())

    handles = [m.register_forward_hook(count) for m in relus]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return kernel


@register_proxy("naswot", needs_labels=False,
                reference="Mellor et al., Neural Architecture Search without Training, ICML 2021 "
                          "(BayesWatch/nas-without-training, hook_logdet)")
def naswot(ctx: ProxyContext) -> float:
    """NASWOT: log|K_H| (slogdet) of the binary ReLU-code kernel K_H summed over every ReLU module,
    one forward of the batch in train mode."""
    ctx.model.train()
    kernel = relu_code_kernel(ctx.model, ctx.inputs)
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet.item()) if sign.item() > 0 else float("nan")


def jacobian_correlation_score(jacobians: torch.Tensor, k: float = 1e-5) -> float:
    """-Σ_i [log(λ_i + k) + 1/(λ_i + k)] over the eigenvalues λ of the correlation matrix of the
    per-sample input Jacobians (rows); NaN when a row is constant."""
    j = jacobians.reshape(jacobians.shape[0], -1).to(torch.float64)
    corr = torch.corrcoef(j)
    if not torch.isfinite(corr).all():
        return float("nan")
    eig = torch.linalg.eigvalsh(corr)
    value = -(torch.log(eig + k) + 1.0 / (eig + k)).sum().item()
    return float(value) if math.isfinite(value) else float("nan")


@register_proxy("jacob_cov", needs_labels=False,
                reference="Mellor et al. 2020 (v1); Abdelfattah et al., ICLR 2021 "
                          "(mohsaied/zero-cost-nas measures/jacob_cov.py)")
def jacob_cov(ctx: ProxyContext) -> float:
    """jacob_cov: with J_i = ∂(Σ logits_i)/∂x_i per sample (train mode), the score
    -Σ [log(λ + 1e-5) + 1/(λ + 1e-5)] over the eigenvalues λ of corrcoef(J)."""
    model = ctx.model
    model.train()
    x = ctx.inputs.detach().clone().requires_grad_(True)
    y = logits_of(model(x))
    (jac,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), allow_unused=True)
    if jac is None:
        return float("nan")
    return jacobian_correlation_score(jac)
