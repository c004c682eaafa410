"""Differentiable latency for gradient-based search (ProxylessNAS / FBNet style).

A per-operator lookup table holds, for every mixed edge and candidate op, the latency that op
adds to the network: each candidate is timed at its feature-map shape on the target device, and
an edge shared by several cells (one α matrix for all cells of a group, as DARTS and NB201 do)
sums its cells' times. The network's expected latency under mixing weights ``w`` is then

    E[latency] = fixed + Σ_groups Σ_edges Σ_ops w[edge, op] · LUT[edge, op]

which is linear in ``w`` (so differentiable w.r.t. α through the softmax), and equals the table
latency of the discrete arch when ``w`` is one-hot. The search minimises CE + λ·E[latency];
λ trades accuracy for latency and is what a Tune sweep varies, one trial per λ.

Sources of mixing weights: DARTS supernets (``model.mixing_weights()``: group -> [edges, ops]
softmax(α / T)) and the hybrid conv/attention supernet (:func:`hybrid_mixing_weights`:
[layers, 2] = (α, 1 − α)).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from raynas.errors import CheckpointError, ConfigError, DataError
from raynas.io import atomic_write_json

PathLike = Union[str, os.PathLike]
FORMAT = "raynas-op-latency-table"
#: group and op names of the hybrid space's α (α = P(convolution))
HYBRID_GROUP = "hybrid"
HYBRID_OPS = ("conv", "attention")
#: ``timer(module, input_shape) -> milliseconds``
Timer = Callable[[Any, Tuple[int, ...]], float]


@dataclass(frozen=True)
class OpInstance:
    """One candidate op of one copy of an edge: what to time and where its time goes."""

    group: str
    edge: int
    op: str
    module: Any  # nn.Module
    input_shape: Tuple[int, ...]
    #: instances with equal signatures compute the same thing at the same shape: timed once
    signature: Tuple[Any, ...]


class OperatorLatencyTable:
    """Latency (ms) per group, edge and candidate op, plus a fixed part (stem, head, ...).

    ``tables[group]`` is an ``[edges, ops]`` array whose column order is ``op_names[group]``
    (the order of the α matrix columns).
    """

    def __init__(self, tables: Mapping[str, np.ndarray], op_names: Mapping[str, Sequence[str]],
                 fixed_ms: float = 0.0, device: str = "", info: Optional[Mapping[str, Any]] = None) -> None:
        self.tables: Dict[str, np.ndarray] = {}
        self.op_names: Dict[str, Tuple[str, ...]] = {}
        for group, table in tables.items():
            arr = np.asarray(table, dtype=np.float64)
            names = tuple(op_names.get(group, ()))
            if arr.ndim != 2 or arr.shape[1] != len(names) or arr.shape[0] < 1:
                raise DataError(f"latency table of group '{group}' must be [edges, {len(names)} ops] for "
                                f"ops {names}, got shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise DataError(f"latency table of group '{group}' holds non-finite values")
            self.tables[group], self.op_names[group] = arr, names
        if not self.tables:
            raise DataError("an operator latency table needs at least one group")
        if not math.isfinite(float(fixed_ms)):
            raise DataError(f"fixed latency must be finite, got {fixed_ms}")
        self.fixed_ms = float(fixed_ms)
        self.device = str(device)
        self.info = dict(info or {})

    # ------------------------------------------------------------------ latency
    def expected(self, weights: Mapping[str, Any]):
        """E[latency] in ms under mixing weights (group -> [edges, ops] tensor or array).

        Returns a 0-dim torch tensor (differentiable) when the weights are tensors, else a float.
        """
        missing = [g for g in self.tables if g not in weights]
        if missing:
            raise ConfigError(f"mixing weights lack group(s) {missing}; they have {sorted(weights)}")
        total: Any = self.fixed_ms
        for group, table in self.tables.items():
            w = weights[group]
            if tuple(w.shape) != table.shape:
                raise ConfigError(f"mixing weights of group '{group}' have shape {tuple(w.shape)}, the "
                                  f"table {table.shape} (edges x ops {self.op_names[group]})")
            if _is_tensor(w):
                import torch
                term = (w * torch.as_tensor(table, dtype=w.dtype, device=w.device)).sum()
            else:
                term = float((np.asarray(w, dtype=np.float64) * table).sum())
            total = total + term
        return total

    def latency(self, choices: Mapping[str, Sequence[Union[int, str]]]) -> float:
        """Table latency of a discrete arch: per group, one op (index or name) per edge."""
        total = self.fixed_ms
        for group, table in self.tables.items():
            if group not in choices:
                raise ConfigError(f"choices lack group '{group}'")
            picks = list(choices[group])
            if len(picks) != table.shape[0]:
                raise ConfigError(f"group '{group}' has {table.shape[0]} edges, got {len(picks)} choices")
            for e, pick in enumerate(picks):
                total += float(table[e, self._op_index(group, pick)])
        return total

    def argmax_choices(self, weights: Mapping[str, Any]) -> Dict[str, List[int]]:
        """The op each edge's weights pick (ties: the first), per group."""
        out = {}
        for group in self.tables:
            w = weights[group]
            w = w.detach().cpu().numpy() if _is_tensor(w) else np.asarray(w)
            out[group] = [int(i) for i in np.argmax(w, axis=1)]
        return out

    def _op_index(self, group: str, pick: Union[int, str]) -> int:
        names = self.op_names[group]
        if isinstance(pick, str):
            if pick not in names:
                raise ConfigError(f"group '{group}' has no op '{pick}'; its ops are {names}")
            return names.index(pick)
        index = int(pick)
        if not 0 <= index < len(names):
            raise ConfigError(f"op index {index} is outside group '{group}' ({len(names)} ops)")
        return index

    # ------------------------------------------------------------------ files
    def to_json(self) -> Dict[str, Any]:
        return {"format": FORMAT, "version": 1, "device": self.device, "fixed_ms": self.fixed_ms,
                "groups": {g: {"ops": list(self.op_names[g]), "ms": self.tables[g].tolist()} for g in self.tables},
                "info": self.info}

    def save(self, path: PathLike) -> Path:
        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: PathLike) -> "OperatorLatencyTable":
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"operator latency table not found: {p}") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{p} is not a readable JSON latency table ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{p} is not an operator latency table (format {FORMAT!r})")
        try:
            groups = data["groups"]
            return cls({g: np.asarray(v["ms"], dtype=np.float64) for g, v in groups.items()},
                       {g: v["ops"] for g, v in groups.items()}, data.get("fixed_ms", 0.0),
                       data.get("device", ""), data.get("info"))
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise CheckpointError(f"{p}: malformed operator latency table ({exc})") from exc

    def __repr__(self) -> str:
        shapes = ", ".join(f"{g}{tuple(t.shape)}" for g, t in self.tables.items())
        return f"OperatorLatencyTable({shapes}, fixed={self.fixed_ms:.3f} ms, device={self.device!r})"


def latency_loss(task_loss, weights: Mapping[str, Any], table: OperatorLatencyTable, lam: float):
    """``task_loss + λ·E[latency]`` (ms), the loss of a latency-aware α step."""
    if not (lam >= 0 and math.isfinite(lam)):
        raise ConfigError(f"the latency weight λ must be a finite number >= 0, got {lam}")
    return task_loss + float(lam) * table.expected(weights)


# ---------------------------------------------------------------------- building tables
def build_latency_table(instances: Iterable[OpInstance], op_names: Mapping[str, Sequence[str]],
                        num_edges: Mapping[str, int], timer: Timer, *, fixed_ms: float = 0.0,
                        device: str = "", info: Optional[Mapping[str, Any]] = None) -> OperatorLatencyTable:
    """Time every op instance (once per signature) and sum the times into its group's edge."""
    tables = {g: np.zeros((int(num_edges[g]), len(op_names[g]))) for g in op_names}
    timed: Dict[Tuple[Any, ...], float] = {}
    count = 0
    for inst in instances:
        if inst.group not in tables:
            raise ConfigError(f"op instance of unknown group '{inst.group}'")
        if inst.signature not in timed:
            ms = float(timer(inst.module, inst.input_shape))
            if not (ms >= 0 and math.isfinite(ms)):
                raise DataError(f"timing {inst.op} at {inst.input_shape} gave {ms} ms")
            timed[inst.signature] = ms
        tables[inst.group][inst.edge, list(op_names[inst.group]).index(inst.op)] += timed[inst.signature]
        count += 1
    meta = {"instances": count, "distinct_timed": len(timed), **dict(info or {})}
    return OperatorLatencyTable(tables, op_names, fixed_ms, device, meta)


def darts_op_instances(supernet, batch_size: int = 1) -> Tuple[List[OpInstance], Dict[str, Tuple[str, ...]], Dict[str, int]]:
    """Every candidate op of every mixed op of a DARTS-style supernet (``mixed_ops()``, with
    ``group``/``edge``/``C_in``/``resolution`` on each), and the groups' op names and edge counts."""
    instances: List[OpInstance] = []
    op_names: Dict[str, Tuple[str, ...]] = {}
    for mixed in supernet.mixed_ops():
        if mixed.resolution is None:
            raise ConfigError(f"mixed op {mixed.group}[{mixed.edge}] does not give its input resolution; "
                              "a latency table needs the feature-map shape of every edge")
        op_names[mixed.group] = tuple(supernet.op_names(mixed.group))
        shape = (int(batch_size), mixed.C_in, mixed.resolution, mixed.resolution)
        for name in mixed.op_names:
            signature = (name, mixed.C_in, mixed.C_out, mixed.stride, mixed.resolution, int(batch_size))
            instances.append(OpInstance(mixed.group, mixed.edge, name, mixed.ops[name], shape, signature))
    if not instances:
        raise ConfigError(f"{type(supernet).__name__} has no mixed ops to time")
    num_edges = {g: len(supernet.edge_names(g)) for g in op_names}
    return instances, op_names, num_edges


def hybrid_op_instances(supernet, batch_size: int = 1) -> Tuple[List[OpInstance], Dict[str, Tuple[str, ...]], Dict[str, int]]:
    """The two candidate ops of every layer of a hybrid conv/attention supernet, at their
    current widths and the feature-map shape they run at."""
    space = supernet.space
    shape = (int(batch_size), space.channels, space.feature_size, space.feature_size)
    instances = []
    for i, layer in enumerate(supernet.layers):
        for name, module in zip(HYBRID_OPS, (layer.conv, layer.attn)):
            instances.append(OpInstance(HYBRID_GROUP, i, name, module, shape, (id(module), shape)))
    return instances, {HYBRID_GROUP: HYBRID_OPS}, {HYBRID_GROUP: len(supernet.layers)}


def hybrid_mixing_weights(supernet):
    """``{"hybrid": [layers, 2]}`` = (α, 1 − α) per layer, differentiable w.r.t. the α logits."""
    import torch

    alpha = torch.sigmoid(torch.stack(list(supernet.alpha_parameters())))
    return {HYBRID_GROUP: torch.stack([alpha, 1 - alpha], dim=1)}


def module_timer(device: str = "cpu", warmup: int = 5, repeats: int = 20, threads: Optional[int] = 1,
                 seed: int = 0) -> Timer:
    """``timer(module, shape) -> mean ms`` on ``device`` (:func:`raynas.hardware.measure.time_module`).

    Each op is timed on a copy, so the supernet's own modules keep their device and mode.
    """
    import copy

    from raynas.hardware.measure import time_module

    def timer(module, shape):
        return time_module(copy.deepcopy(module), shape, device, warmup=warmup, repeats=repeats,
                           seed=seed, threads=threads).mean_ms

    return timer


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")
