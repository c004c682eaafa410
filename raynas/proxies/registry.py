"""The zero-cost proxy registry and the context every proxy reads its inputs from.

A proxy is ``fn(ctx: ProxyContext) -> float`` registered under a name. ``compute_proxy`` runs
one on any ``nn.Module`` + minibatch + loss; ``compute_proxies`` runs several on one context so
passes they share (one loss backward for snip / snip_layernorm / grad_norm / fisher) run once.
The model is restored from one snapshot after every proxy, so each starts from the model as
given (as the reference code's per-measure network copies do) and it is unchanged afterwards.

Conventions shared by all proxies (those of the zero-cost-nas reference, Abdelfattah et al. 2021):
- the model is put in train mode (BN uses batch statistics);
- "scored layers" are the ``nn.Conv2d`` and ``nn.Linear`` modules (subclasses included) and
  only their ``weight`` counts;
- the objective is ``loss_fn(logits, targets)``; with ``loss_fn=None`` it is the sum of the
  logits (PreNAS's data-free objective), and proxies then need no labels;
- higher is better for every proxy (signs as in the references);
- a proxy that is undefined for a network (e.g. a constant output) returns NaN.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, MutableMapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.errors import ConfigError
from raynas.proxies.state import StateSnapshot
from raynas.registry import Registry

LossFn = Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
Batch = Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]], "ProxyBatch"]
SCORED_LAYER_TYPES: Tuple[type, ...] = (nn.Conv2d, nn.Linear)


@dataclass
class ProxyBatch:
    """One minibatch: ``inputs`` and (optional) integer class ``targets``."""

    inputs: torch.Tensor
    targets: Optional[torch.Tensor] = None

    @classmethod
    def of(cls, batch: Batch) -> "ProxyBatch":
        if isinstance(batch, ProxyBatch):
            return batch
        if isinstance(batch, torch.Tensor):
            return cls(batch, None)
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            return cls(batch[0], batch[1])
        raise ConfigError("a proxy batch is an inputs tensor, an (inputs, targets) pair or a "
                          f"ProxyBatch; got {type(batch).__name__}")


@dataclass(frozen=True)
class ProxySpec:
    """A registered proxy: its function and what it needs."""

    name: str
    fn: Callable[["ProxyContext"], float]
    data_free: bool = False      #: only the input shape matters (synthetic inputs inside)
    needs_labels: bool = True    #: uses the loss (else runs on inputs alone)
    reference: str = ""

    @property
    def description(self) -> str:
        doc = (self.fn.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


PROXIES: Registry[ProxySpec] = Registry(
    "proxy", preload=[f"raynas.proxies.{m}" for m in ("activation", "gradient", "size", "synflow", "zen")],
    hint="Register your own with @raynas.proxies.register_proxy('name').")


def register_proxy(name: str, *, data_free: bool = False, needs_labels: bool = True,
                   reference: str = "") -> Callable:
    """Decorator registering ``fn(ctx) -> float`` as proxy ``name``."""
    if not name or not isinstance(name, str):
        raise ConfigError("register_proxy needs a non-empty name")

    def decorator(fn: Callable[["ProxyContext"], float]) -> Callable[["ProxyContext"], float]:
        spec = ProxySpec(name, fn, data_free, needs_labels, reference)
        # the same function again (a module reloaded) keeps the name; another one is an error
        same = PROXIES.is_loaded(name) and PROXIES.get(name).fn is fn
        PROXIES.register(name, spec, description=spec.description, replace=same)
        return fn

    return decorator


def list_proxies() -> List[str]:
    """Names of every registered proxy."""
    return PROXIES.names()


def proxy_spec(name: str) -> ProxySpec:
    return PROXIES.get(name)


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output (a tensor, the first element of a tuple, or ``["logits"]``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    raise ConfigError(f"cannot find logits in a model output of type {type(output).__name__}")


def scored_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The layers whose weights the proxies score: Conv2d and Linear, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SCORED_LAYER_TYPES)]


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@dataclass
class WeightGrads:
    """One loss gradient pass: per scored layer its weight and ``g = dL/dW`` (None if unused);
    if asked for, the per-output-channel Fisher terms and GraSP's Hessian-gradient product
    ``H g`` (g detached), both from the same forward."""

    names: List[str]
    weights: List[torch.Tensor]
    grads: List[Optional[torch.Tensor]]
    fisher: Optional[Dict[str, torch.Tensor]] = None
    hessian_grad: Optional[List[Optional[torch.Tensor]]] = None


@dataclass
class InputJacobian:
    """One forward of the batch with input gradients: ``d(Σ logits_i)/dx_i`` per sample, and
    the NASWOT ReLU-code kernel of that forward when it was asked for."""

    jacobian: Optional[torch.Tensor]
    relu_kernel: Optional[torch.Tensor] = None


class ProxyContext:
    """What a proxy reads: the model, the batch, the objective, options and shared passes."""

    def __init__(self, model: nn.Module, batch: Batch, loss_fn: LossFn = F.cross_entropy,
                 requested: Sequence[str] = (), **options: Any) -> None:
        self.model = model
        b = ProxyBatch.of(batch)
        self.device = model_device(model)
        self.inputs = b.inputs.to(self.device)
        self.targets = None if b.targets is None else b.targets.to(self.device)
        self.loss_fn = loss_fn
        self.requested = tuple(requested)
        self.options = dict(options)
        self._weight_grads: Optional[WeightGrads] = None
        self._input_jacobian: Optional[InputJacobian] = None

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    def objective(self, output: Any, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The scalar a gradient proxy differentiates: the loss, or the logit sum if data-free."""
        logits = logits_of(output)
        if self.loss_fn is None:
            return logits.sum()
        t = self.targets if targets is None else targets
        if t is None:
            raise ConfigError("this proxy needs targets for its loss: pass (inputs, targets) "
                              "or loss_fn=None to use the data-free sum-of-logits objective")
        return self.loss_fn(logits, t)

    def weight_grads(self, fisher: bool = False, grasp: bool = False) -> WeightGrads:
        """One forward + backward of the objective, shared by the proxies that need it (the
        Fisher and GraSP extras are recorded in that pass when those proxies were requested)."""
        wg = self._weight_grads
        if wg is None or (fisher and wg.fisher is None) or (grasp and wg.hessian_grad is None):
            wg = _loss_weight_grads(self, with_fisher=fisher or "fisher" in self.requested,
                                    with_grasp=grasp or "grasp" in self.requested)
            self._weight_grads = wg
        return wg

    def input_jacobian(self, relu_kernel: bool = False) -> InputJacobian:
        """One forward + input backward of the batch, shared by jacob_cov and naswot."""
        ij = self._input_jacobian
        if ij is None or (relu_kernel and ij.relu_kernel is None):
            from raynas.proxies.activation import input_jacobian_pass

            ij = input_jacobian_pass(self, with_kernel=relu_kernel or "naswot" in self.requested)
            self._input_jacobian = ij
        return ij


def _loss_weight_grads(ctx: ProxyContext, with_fisher: bool, with_grasp: bool) -> WeightGrads:
    model = ctx.model
    model.train()
    layers = scored_layers(model)
    fisher: Dict[str, torch.Tensor] = {}
    recording = [True]  # GraSP's double backward reaches these tensors again: count only the first
    handles = []
    if with_fisher:
        def make_hook(name: str):
            def on_output(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
                if not output.requires_grad:
                    return
                act = output.detach()

                def on_grad(grad: torch.Tensor) -> None:
                    # Fisher of a channel's mask (Turner et al. 2020, as in zero-cost-nas):
                    # 0.5 * mean_n (sum_spatial act * dL/dact)^2
                    if not recording[0]:
                        return
                    grad = grad.detach()
                    g_nk = (act * grad).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * grad
                    term = g_nk.pow(2).mean(0).mul(0.5)
                    fisher[name] = fisher[name] + term if name in fisher else term

                output.register_hook(on_grad)
            return on_output

        handles = [m.register_forward_hook(make_hook(n)) for n, m in layers]
    weights = [m.weight for _, m in layers]
    for w in weights:
        w.requires_grad_(True)  # the caller's snapshot restores the flags
    try:
        loss = ctx.objective(model(ctx.inputs))
        grads = torch.autograd.grad(loss, weights, allow_unused=True, create_graph=with_grasp)
    finally:
        recording[0] = False
        for h in handles:
            h.remove()
    hessian_grad = None
    if with_grasp:
        # GraSP (zero-cost-nas): z = Σ g.detach() · g, then H g = dz/dθ; its two forward passes
        # see the same batch and weights, so one forward serves both
        z = None
        for g in grads:
            if g is not None and g.requires_grad:
                term = (g.detach() * g).sum()
                z = term if z is None else z + term
        hessian_grad = ([None] * len(weights) if z is None
                        else list(torch.autograd.grad(z, weights, allow_unused=True)))
    # weights are copied: a later proxy may rewrite the parameters in place before restoring them
    return WeightGrads([n for n, _ in layers], [w.detach().clone() for w in weights],
                       [None if g is None else g.detach() for g in grads],
                       fisher if with_fisher else None,
                       None if hessian_grad is None else [None if h is None else h.detach() for h in hessian_grad])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_proxies(names: Sequence[str], model: nn.Module, batch: Batch,
                    loss_fn: LossFn = F.cross_entropy, *, timings: Optional[MutableMapping[str, float]] = None,
                    **options: Any) -> Dict[str, float]:
    """Score ``model`` with each proxy in ``names``; the model is left exactly as it was.

    ``timings``, if given, accumulates each proxy's wall seconds (the shared gradient pass is
    charged to the first proxy that uses it).
    """
    specs = [proxy_spec(n) for n in names]
    ctx = ProxyContext(model, batch, loss_fn, requested=[s.name for s in specs], **options)
    out: Dict[str, float] = {}
    snapshot = StateSnapshot(model)
    for spec in specs:
        start = time.perf_counter()
        try:
            value = spec.fn(ctx)
        finally:
            snapshot.restore()
        if timings is not None:
            _synchronize(ctx.device)
            timings[spec.name] = timings.get(spec.name, 0.0) + time.perf_counter() - start
        out[spec.name] = float(value)
    return out


def compute_proxy(name: str, model: nn.Module, batch: Batch, loss_fn: LossFn = F.cross_entropy,
                  **options: Any) -> float:
    """Score ``model`` with one proxy on ``batch`` (``(inputs, targets)`` or inputs alone)."""
    return compute_proxies([name], model, batch, loss_fn, **options)[name]
