"""Activation / input-Jacobian proxies: naswot (Mellor et al.) and jacob_cov."""
from __future__ import annotations

import math
from typing import Any, List

import torch
import torch.nn as nn

from raynas.errors import ConfigError
from raynas.proxies.registry import InputJacobian, ProxyContext, logits_of, register_proxy


def _relu_modules(model: nn.Module) -> List[nn.Module]:
    # the reference selects modules by "ReLU" in the type name (ReLU, ReLU6, LeakyReLU, ...)
    return [m for m in model.modules() if "ReLU" in type(m).__name__]


class _ReluCodeKernel:
    """Accumulates K_H over every ReLU module's forwards while attached."""

    def __init__(self, model: nn.Module, batch_size: int, device: torch.device) -> None:
        relus = _relu_modules(model)
        if not relus:
            raise ConfigError("naswot needs nn.ReLU modules (it reads their binary activation codes); "
                              f"{type(model).__name__} has none")
        self.kernel = torch.zeros((batch_size, batch_size), dtype=torch.float64, device=device)
        self._handles = [m.register_forward_hook(self._count) for m in relus]

    def _count(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        x = args[0] if isinstance(args, tuple) else args
        # after an in-place ReLU the input holds relu(x), whose sign pattern (> 0) is the same
        codes = (x.detach().reshape(x.shape[0], -1) > 0).to(torch.float64)
        self.kernel.add_(codes @ codes.t()).add_((1.0 - codes) @ (1.0 - codes).t())

    def close(self) -> torch.Tensor:
        for h in self._handles:
            h.remove()
        return self.kernel


def relu_code_kernel(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """K_H of Mellor et al. (2021): K[i, j] = Σ over ReLU units of [c_i = c_j], c the binary code
    (pre-activation > 0) of sample i; i.e. N_units - Hamming distance. float64, N x N."""
    counter = _ReluCodeKernel(model, inputs.shape[0], inputs.device)
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        kernel = counter.close()
    return kernel


def input_jacobian_pass(ctx: ProxyContext, with_kernel: bool) -> InputJacobian:
    """One train-mode forward with input gradients (jacob_cov) that also records the NASWOT
    kernel: train-mode BN makes its codes those of a separate forward (Mellor et al. likewise
    score the forward that follows their Jacobian pass)."""
    model = ctx.model
    model.train()
    counter = _ReluCodeKernel(model, ctx.inputs.shape[0], ctx.device) if with_kernel else None
    try:
        x = ctx.inputs.detach().clone().requires_grad_(True)
        y = logits_of(model(x))
    finally:
        kernel = counter.close() if counter is not None else None
    jac = None
    if y.requires_grad:
        (jac,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), allow_unused=True)
    return InputJacobian(None if jac is None else jac.detach(), kernel)


@register_proxy("naswot", needs_labels=False,
                reference="Mellor et al., Neural Architecture Search without Training, ICML 2021 "
                          "(BayesWatch/nas-without-training, hook_logdet)")
def naswot(ctx: ProxyContext) -> float:
    """NASWOT: log|K_H| (slogdet) of the binary ReLU-code kernel K_H summed over every ReLU module,
    one forward of the batch in train mode."""
    kernel = ctx.input_jacobian(relu_kernel=True).relu_kernel
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
    jac = ctx.input_jacobian().jacobian
    return float("nan") if jac is None else jacobian_correlation_score(jac)
