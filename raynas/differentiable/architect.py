"""The architecture step of DARTS: update α on a validation batch.

First order (DARTS-V1) descends ∇_α L_val(w, α). Second order (DARTS-V2) descends the gradient
of L_val(w', α) with w' = w - ξ·d(∇_w L_train(w, α)) the weights after one step of the weight
optimizer (SGD: its current learning rate ξ, momentum buffer and weight decay):

    ∇_α L_val(w', α) - ξ ∇²_{α,w} L_train(w, α) · ∇_{w'} L_val(w', α)

where the Hessian-vector product is a central finite difference,
``(∇_α L_train(w + εv, α) - ∇_α L_train(w - εv, α)) / 2ε`` with v = ∇_{w'} L_val(w', α) and
ε = 0.01 / ‖v‖ (``fd_scale``). The finite difference needs full float32: under bf16 (or TF32) a
perturbation of norm 0.01 spread over all weights rounds away, so the second-order passes run
without autocast and with TF32 off. It also assumes the α gradient is smooth at that scale: in a
ReLU network it jumps wherever a pre-activation changes sign, so on very small networks (a few
thousand weights, where 0.01 is a sizable step per weight) the product can be far off; a
network of search size spreads the step over ~10^5-10^6 weights.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from raynas.errors import ConfigError

Batch = Tuple[torch.Tensor, torch.Tensor]
#: finite-difference step: ε = FD_SCALE / ‖v‖ (DARTS' r = 0.01)
FD_SCALE = 0.01


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """float32 math: autocast off, TF32 off for cuDNN convolutions and matmuls."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


class Architect:
    """Updates a :class:`~raynas.differentiable.mixed.DifferentiableSupernet`'s α.

    ``optimizer`` holds only the α (DARTS: Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3);
    ``autocast`` is the context the first-order pass runs under (e.g. bf16 on a GPU);
    ``fd_scale`` the r of ε = r / ‖v‖ (DARTS: 0.01).
    """

    def __init__(self, model, optimizer: torch.optim.Optimizer, order: int = 1,
                 autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                 fd_scale: float = FD_SCALE, penalty: Optional[Callable[[], torch.Tensor]] = None) -> None:
        if order not in (1, 2):
            raise ConfigError(f"DARTS order must be 1 (first order) or 2 (second order), got {order!r}")
        alphas = {id(p) for p in model.arch_parameters()}
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if held != alphas:
            raise ConfigError("the architecture optimizer must hold exactly the supernet's α "
                              "(model.arch_parameters()), in their own optimizer")
        if not fd_scale > 0:
            raise ConfigError(f"fd_scale must be positive, got {fd_scale!r}")
        self.model, self.optimizer, self.order, self.autocast = model, optimizer, order, autocast
        self.fd_scale = float(fd_scale)
        #: a term of α alone added to the α loss (e.g. λ·E[latency]); its gradient adds directly
        self.penalty = penalty

    # ------------------------------------------------------------------ public
    def step(self, train: Batch, val: Batch, weight_optimizer: Optional[torch.optim.Optimizer] = None
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One α update; returns the validation loss and logits (detached) it was computed on."""
        grads, loss, logits = self.gradient(train, val, weight_optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.model.arch_parameters(), grads):
            p.grad = g
        self.optimizer.step()
        return loss, logits

    def gradient(self, train: Batch, val: Batch, weight_optimizer: Optional[torch.optim.Optimizer] = None
                 ) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The α gradient of this order, without stepping (also what the tests check), plus the
        penalty's gradient if there is one; the returned loss is the validation CE alone."""
        if self.order == 1:
            with self.autocast():
                loss, logits = _loss(self.model, val)
            grads = list(torch.autograd.grad(loss, self.model.arch_parameters()))
            loss, logits = loss.detach(), logits.detach()
        else:
            if not isinstance(weight_optimizer, torch.optim.SGD):
                raise ConfigError("second-order DARTS unrolls one step of the weight optimizer, which "
                                  f"must be torch.optim.SGD, got {type(weight_optimizer).__name__}")
            with full_precision():
                grads, loss, logits = self._second_order(train, val, weight_optimizer)
        if self.penalty is not None:
            # the penalty depends on α only: the unrolled weights w' do not enter it
            extra = _grads(self.penalty(), self.model.arch_parameters())
            grads = [g + e.to(g.dtype) for g, e in zip(grads, extra)]
        return grads, loss, logits

    # ------------------------------------------------------------------ second order
    def _second_order(self, train: Batch, val: Batch, optimizer: torch.optim.SGD
                      ) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        alphas = self.model.arch_parameters()
        params, scales = _sgd_params(optimizer)
        with torch.no_grad():
            backup = [p.detach().clone() for p in params]

        # w' = w - ξ·d(g): the step the weight optimizer would take on this training batch
        loss_train, _ = _loss(self.model, train)
        grads = _grads(loss_train, params)
        with torch.no_grad():
            for p, g, step in zip(params, grads, _sgd_steps(optimizer, params, grads)):
                p.sub_(step)

        loss_val, logits = _loss(self.model, val)
        both = _grads(loss_val, list(alphas) + params)
        d_alpha, v = both[:len(alphas)], both[len(alphas):]
        # ξ·∂d/∂g per parameter (ξ for plain momentum SGD) folded into the direction
        v = [vi * s for vi, s in zip(v, scales)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(vi) for vi in v]))
        eps = self.fd_scale / norm.clamp_min(1e-12)

        with torch.no_grad():
            for p, w0, vi in zip(params, backup, v):
                p.copy_(w0).add_(eps * vi)
        g_plus = _grads(_loss(self.model, train)[0], alphas)
        with torch.no_grad():
            for p, w0, vi in zip(params, backup, v):
                p.copy_(w0).sub_(eps * vi)
        g_minus = _grads(_loss(self.model, train)[0], alphas)
        with torch.no_grad():
            for p, w0 in zip(params, backup):
                p.copy_(w0)
        grads_alpha = [da - (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, g_plus, g_minus)]
        return grads_alpha, loss_val.detach(), logits.detach()


def _loss(model, batch: Batch) -> Tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.float(), y), logits


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _sgd_params(optimizer: torch.optim.SGD) -> Tuple[List[torch.Tensor], List[float]]:
    """The optimizer's parameters and, per parameter, ξ·∂d/∂g of its update direction d."""
    params, scales = [], []
    for group in optimizer.param_groups:
        if group.get("maximize"):
            raise ConfigError("second-order DARTS needs an SGD that minimises (maximize=False)")
        lr, mom = float(group["lr"]), float(group.get("momentum", 0.0))
        damp, nesterov = float(group.get("dampening", 0.0)), bool(group.get("nesterov", False))
        for p in group["params"]:
            has_buffer = optimizer.state.get(p, {}).get("momentum_buffer") is not None
            # d = μ·buf + (1-τ)(g + λw) with a buffer, d = g + λw on the first step; nesterov
            # adds μ times the new buffer
            dg = (1.0 - damp) if (mom and has_buffer) else 1.0
            if nesterov and mom:
                dg = 1.0 + mom * dg
            params.append(p)
            scales.append(lr * dg)
    return params, scales


def _sgd_steps(optimizer: torch.optim.SGD, params: Sequence[torch.Tensor],
               grads: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """ξ·d for each parameter: exactly what ``optimizer.step()`` would subtract (not applied)."""
    lookup = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    steps = []
    for p, g in zip(params, grads):
        group = lookup[id(p)]
        lr, mom = float(group["lr"]), float(group.get("momentum", 0.0))
        damp, wd = float(group.get("dampening", 0.0)), float(group.get("weight_decay", 0.0))
        d = g + wd * p.detach() if wd else g
        if mom:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            new_buf = d if buf is None else buf * mom + d * (1.0 - damp)
            d = d + mom * new_buf if group.get("nesterov", False) else new_buf
        steps.append(lr * d)
    return steps
