"""Continuous relaxation of a cell: mixed operations and the base of differentiable supernets.

An edge of a differentiable cell computes ``Σ_k w_k · op_k(x)`` with ``w = softmax(α / T)``
(DARTS, Liu et al. 2019; TD-DARTS adds the temperature ``T``). The architecture parameters α
are ``nn.Parameter``s of the supernet, kept apart from the weights so each gets its own
optimizer; the temperature is a plain attribute that a schedule sets once per epoch.

Two other relaxations share the α and the temperature: ``gumbel`` (GDAS, Dong & Yang 2019:
each forward samples one op per edge from a hard, straight-through Gumbel-softmax at
temperature T and runs only that op) and ``argmax`` (the derived cell inside the supernet: a
one-hot of each edge's strongest op, for measuring the gap between mixture and discrete cell).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from raynas.arch import Arch
from raynas.errors import ConfigError

#: ops whose output is identically zero: skipped in the sum (same value, same gradients, less work)
ZERO_OPS = frozenset({"none"})


class _WeightedSum(torch.autograd.Function):
    """``Σ_k w_k · o_k`` whose weight gradients ``Σ grad · o_k`` are summed and returned in the
    weights' precision. Under bf16 autocast autograd's default would round each to 8 bits, about
    the size of the differences between ops that decide the sign of α's gradient."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, *outputs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weights, *outputs)
        out = outputs[0] * weights[0].to(outputs[0].dtype)
        for k in range(1, len(outputs)):
            out = torch.addcmul(out, weights[k].to(outputs[k].dtype), outputs[k])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weights, *outputs = ctx.saved_tensors
        grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_weights = torch.stack([(grad * o).sum(dtype=weights.dtype) for o in outputs])
        grad_outputs = [grad * weights[k].to(grad.dtype) if ctx.needs_input_grad[k + 1] else None
                        for k in range(len(outputs))]
        return (grad_weights, *grad_outputs)


class MixedOp(nn.Module):
    """One edge: ``Σ_k w_k · op_k(x)`` over named candidate ops.

    ``group`` names the α matrix the edge reads its weights from and ``edge`` its row; the
    shape fields (``C_in``, ``C_out``, ``stride``, ``resolution`` = input side length) describe
    the edge for cost models such as latency lookup tables. Ops named in ``ZERO_OPS`` output
    zeros by definition: they are kept (their weight is part of the softmax) but not run.
    """

    def __init__(self, ops: Mapping[str, nn.Module], *, group: str, edge: int, C_in: int, C_out: int,
                 stride: int, resolution: Optional[int] = None) -> None:
        super().__init__()
        if not ops:
            raise ConfigError("a mixed op needs at least one candidate op")
        self.op_names: Tuple[str, ...] = tuple(ops)
        if all(name in ZERO_OPS for name in self.op_names):
            raise ConfigError("a mixed op needs at least one op that is not 'none'")
        self.ops = nn.ModuleDict(ops)
        self.group, self.edge = group, int(edge)
        self.C_in, self.C_out, self.stride = int(C_in), int(C_out), int(stride)
        self.resolution = None if resolution is None else int(resolution)
        self._active = [(k, self.ops[name]) for k, name in enumerate(self.op_names)
                        if name not in ZERO_OPS]
        index = [k for k, _ in self._active]
        # the weights of the ops that run: a slice when they are contiguous (no copy), else an
        # index kept on the module's device (a Python list index would copy it from the host, and
        # synchronise with the GPU, at every call)
        self._active_slice = (slice(index[0], index[-1] + 1) if index == list(range(index[0], index[-1] + 1))
                              else None)
        self.register_buffer("_active_index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: Optional[int] = None) -> torch.Tensor:
        """``Σ_k w_k · op_k(x)``; with ``index`` (a hard one-hot ``weights``) only that op runs:
        ``w_index · op_index(x) + Σ_{k≠index} w_k``, GDAS' form, whose other terms are zero in
        the forward pass but pass a gradient to their weights (hence to α)."""
        if weights.shape != (len(self.op_names),):
            raise ValueError(f"edge {self.group}[{self.edge}] mixes {len(self.op_names)} ops, "
                             f"got weights of shape {tuple(weights.shape)}")
        if index is not None:
            out = weights[index] * self.ops[self.op_names[index]](x)
            others = torch.cat([weights[:index], weights[index + 1:]]).sum()
            return out + others
        outputs = [op(x) for _, op in self._active]
        if len(outputs) == len(self.op_names):
            return _WeightedSum.apply(weights, *outputs)
        active = (weights[self._active_slice] if self._active_slice is not None
                  else weights.index_select(0, self._active_index))
        return _WeightedSum.apply(active, *outputs)

    def extra_repr(self) -> str:
        return (f"group={self.group!r}, edge={self.edge}, C_in={self.C_in}, C_out={self.C_out}, "
                f"stride={self.stride}, resolution={self.resolution}")


@dataclass(frozen=True)
class EdgeWeights:
    """The mixing weights of one edge (shared by every cell of its group)."""

    group: str
    edge: int
    name: str                      # e.g. "2<-1" (node 2 from node 1)
    weights: Dict[str, torch.Tensor]  # op name -> 0-dim tensor (differentiable w.r.t. α)


class DifferentiableSupernet(nn.Module):
    """Base of DARTS-style supernets: named α matrices, a temperature and a derivation rule.

    Subclasses register α with :meth:`_add_alpha` (one ``[edges, ops]`` matrix per group, e.g.
    ``normal`` and ``reduce`` cells), build their cells from :class:`MixedOp`, implement
    ``forward`` using :meth:`mixing_weights` and ``derive`` (weights -> a discrete arch of
    ``space``).
    """

    def __init__(self, space) -> None:
        super().__init__()
        self.space = space
        self.alphas = nn.ParameterDict()
        self._op_names: Dict[str, Tuple[str, ...]] = {}
        self._edge_names: Dict[str, Tuple[str, ...]] = {}
        self._temperature = 1.0
        self._relaxation = "softmax"
        self.gumbel_generator: Optional[torch.Generator] = None

    # ------------------------------------------------------------------ α and temperature
    def _add_alpha(self, group: str, edge_names: Sequence[str], op_names: Sequence[str]) -> None:
        self.alphas[group] = nn.Parameter(torch.zeros(len(edge_names), len(op_names)))
        self._op_names[group] = tuple(op_names)
        self._edge_names[group] = tuple(edge_names)

    def init_alphas(self, generator: torch.Generator, scale: float = 1e-3) -> None:
        """α ~ scale · N(0, 1) from an explicit generator (DARTS' initialisation)."""
        with torch.no_grad():
            for alpha in self.alphas.values():
                alpha.copy_(scale * torch.randn(alpha.shape, generator=generator, dtype=alpha.dtype))

    @property
    def temperature(self) -> float:
        """Softmax temperature T of the mixing weights softmax(α / T)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"the softmax temperature must be a positive number, got {value!r}")
        self._temperature = value

    @property
    def relaxation(self) -> str:
        """How the forward pass mixes an edge's ops: ``softmax`` (DARTS, TD-DARTS), ``gumbel``
        (GDAS: one sampled op per edge) or ``argmax`` (the derived cell)."""
        return self._relaxation

    @relaxation.setter
    def relaxation(self, value: str) -> None:
        if value not in RELAXATIONS:
            raise ConfigError(f"unknown relaxation {value!r}; use one of {RELAXATIONS}")
        if value != "softmax" and not self.supports_hard_paths:
            raise ConfigError(f"{type(self).__name__} only supports the softmax relaxation; "
                              f"'{value}' needs a supernet that runs one op per edge")
        self._relaxation = value

    #: whether ``forward`` passes :meth:`forward_weights`' indices to its mixed ops (subclasses)
    supports_hard_paths = False

    @contextlib.contextmanager
    def relaxed(self, relaxation: str) -> Iterator[None]:
        """Run the forward pass under another relaxation for a while (e.g. ``argmax``)."""
        before = self._relaxation
        self.relaxation = relaxation
        try:
            yield
        finally:
            self._relaxation = before

    def op_names(self, group: str) -> Tuple[str, ...]:
        return self._op_names[group]

    def edge_names(self, group: str) -> Tuple[str, ...]:
        return self._edge_names[group]

    def arch_parameters(self) -> List[nn.Parameter]:
        """The α matrices (their own optimizer group)."""
        return list(self.alphas.values())

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every parameter that is not an α."""
        arch = {id(p) for p in self.alphas.values()}
        return [p for p in self.parameters() if id(p) not in arch]

    @contextlib.contextmanager
    def alphas_frozen(self) -> Iterator[None]:
        """α excluded from autograd (a weight step needs no α gradient)."""
        flags = [p.requires_grad for p in self.alphas.values()]
        for p in self.alphas.values():
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(self.alphas.values(), flags):
                p.requires_grad_(flag)

    # ------------------------------------------------------------------ mixing weights
    def mixing_weights(self, temperature: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """``softmax(α / T)`` per group, shape ``[edges, ops]``, differentiable w.r.t. α.

        ``temperature`` defaults to the supernet's current temperature.
        """
        t = self._temperature if temperature is None else float(temperature)
        if not t > 0:
            raise ConfigError(f"the softmax temperature must be positive, got {temperature!r}")
        return {g: torch.softmax(a / t, dim=-1) for g, a in self.alphas.items()}

    def forward_weights(self) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, List[int]]]]:
        """The weights of this forward pass and, for the hard relaxations, the op index that
        runs on every edge (None: every op runs)."""
        if self._relaxation == "softmax":
            return self.mixing_weights(), None
        weights, indices = {}, {}
        for g, a in self.alphas.items():
            if self._relaxation == "argmax":
                index = a.detach().argmax(-1)
                hard = torch.nn.functional.one_hot(index, a.shape[-1]).to(a.dtype)
            else:
                hard, index = gumbel_hard(a, self._temperature, self.gumbel_generator)
            weights[g], indices[g] = hard, index.tolist()
        return weights, indices

    def mixing_weights_numpy(self, temperature: Optional[float] = None) -> Dict[str, np.ndarray]:
        """The same weights in float64 on the host (derivation: near T = 0 float32 ties)."""
        t = self._temperature if temperature is None else float(temperature)
        if not t > 0:
            raise ConfigError(f"the softmax temperature must be positive, got {temperature!r}")
        with torch.no_grad():
            return {g: torch.softmax(a.detach().double().cpu() / t, dim=-1).numpy()
                    for g, a in self.alphas.items()}

    def edge_weights(self, temperature: Optional[float] = None) -> List[EdgeWeights]:
        """Every edge's weights by op name, e.g. for E[latency] = Σ_edges Σ_ops w · LUT(op)."""
        out = []
        for group, w in self.mixing_weights(temperature).items():
            names = self._op_names[group]
            for e, edge_name in enumerate(self._edge_names[group]):
                out.append(EdgeWeights(group, e, edge_name, {n: w[e, k] for k, n in enumerate(names)}))
        return out

    def mixed_ops(self) -> Iterator[MixedOp]:
        """Every mixed op of the network (each cell's copy of each edge), in module order; its
        ``group``/``edge`` index :meth:`mixing_weights` and its shape fields give the context."""
        for module in self.modules():
            if isinstance(module, MixedOp):
                yield module

    # ------------------------------------------------------------------ derivation
    def derive(self, temperature: Optional[float] = None) -> Arch:
        """The discrete arch the current α select (see the subclass for the rule)."""
        raise NotImplementedError

    def latency_choices(self, arch: Arch) -> Dict[str, List[str]]:
        """The op of every α row (group -> one op name per edge) that a derived ``arch`` uses,
        ``none`` on edges it drops: what a per-operator latency table prices (subclasses)."""
        raise ConfigError(f"{type(self).__name__} does not map archs to table choices (latency_choices)")

    def alpha_state(self) -> Dict[str, List[List[float]]]:
        """α as nested lists (JSON-able, for logs and results)."""
        return {g: a.detach().cpu().tolist() for g, a in self.alphas.items()}

    def load_alpha_state(self, state: Mapping[str, Sequence[Sequence[float]]]) -> None:
        with torch.no_grad():
            for g, a in self.alphas.items():
                if g not in state:
                    raise ConfigError(f"alpha state lacks group '{g}' (has {sorted(state)})")
                value = torch.as_tensor(state[g], dtype=a.dtype)
                if value.shape != a.shape:
                    raise ConfigError(f"alpha '{g}' has shape {tuple(a.shape)}, got {tuple(value.shape)}")
                a.copy_(value)


RELAXATIONS = ("softmax", "gumbel", "argmax")


def gumbel_hard(alpha: torch.Tensor, temperature: float, generator: Optional[torch.Generator] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """GDAS' straight-through sample per row: ``h = onehot(argmax) - p.detach() + p`` with
    ``p = softmax((α + g) / τ)``, g ~ Gumbel(0, 1) drawn from ``generator``; returns (h, argmax).
    Rows are redrawn until finite, as GDAS does (a zero uniform draw gives an infinite g)."""
    while True:
        u = torch.rand(alpha.shape, generator=generator, dtype=alpha.dtype).to(alpha.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(alpha.dtype).tiny)))
        soft = torch.softmax((alpha + gumbel) / float(temperature), dim=-1)
        if bool(torch.isfinite(soft).all()):
            break
    index = soft.detach().argmax(-1)
    hard = torch.nn.functional.one_hot(index, alpha.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft, index


def mean_normalised_entropy(weights: Mapping[str, torch.Tensor]) -> float:
    """Mean over edges of H(w) / log(#ops): 1 for uniform mixtures, 0 for one-hot ones."""
    total, count = 0.0, 0
    for w in weights.values():
        w = w.detach().double().clamp_min(1e-300)
        h = -(w * w.log()).sum(-1) / math.log(w.shape[-1])
        total += float(h.sum())
        count += h.numel()
    return total / max(count, 1)
