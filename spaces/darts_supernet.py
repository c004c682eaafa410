"""DARTS' differentiable search network: every cell edge mixes all 8 primitives.

Two α matrices of shape [14, 8] (``normal`` and ``reduce``) are shared by all cells of their
type. BN inside cells is affine-free (DARTS): α alone scales each op's contribution.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.differentiable.mixed import DifferentiableSupernet, MixedOp
from spaces.darts import (EDGES, MULTIPLIER, PRIMITIVES, STEM_MULTIPLIER, STEPS, derive_genotype,
                          reduction_layers)
from spaces.darts_ops import FactorizedReduce, ReLUConvBN, make_darts_op


class DartsSearchCell(nn.Module):
    """A cell whose node k+2 sums mixed edges from all of nodes 0..k+1."""

    def __init__(self, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 resolution: int, track_running_stats: bool = True) -> None:
        super().__init__()
        self.reduction = reduction
        track = track_running_stats
        self.preprocess0 = (FactorizedReduce(C_pp, C, 2, affine=False, track_running_stats=track)
                            if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, 1, False, track))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, 1, False, track)
        group = "reduce" if reduction else "normal"
        edges = []
        for e, (node, src) in enumerate(EDGES):
            stride = 2 if reduction and src < 2 else 1
            ops = {name: make_darts_op(name, C, stride, affine=False, search=True) for name in PRIMITIVES}
            if not track:
                for m in ops.values():
                    _untrack(m)
            side = resolution if src < 2 else (resolution // 2 if reduction else resolution)
            edges.append(MixedOp(ops, group=group, edge=e, C_in=C, C_out=C, stride=stride, resolution=side))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _ in range(STEPS):
            total = None
            for h in list(states):
                y = self.edges[e](h, weights[e])
                total = y if total is None else total + y
                e += 1
            states.append(total)
        return torch.cat(states[-MULTIPLIER:], dim=1)


def _untrack(module: nn.Module) -> None:
    """Batch statistics also in eval mode (no running estimates), as NB201's search runs do."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None


class DartsSupernet(DifferentiableSupernet):
    """DARTS' search ``Network``: stem (3C channels), ``layers`` cells (reductions at 1/3 and 2/3),
    global pooling and a linear classifier; 8 cells of 16 channels by default."""

    def __init__(self, space, num_classes: int = 10, channels: int = 16, layers: int = 8,
                 resolution: int = 32, track_running_stats: bool = True) -> None:
        super().__init__(space)
        if layers < 3 or channels < 2 or channels % 2:
            raise ConfigError(f"the DARTS search network needs layers >= 3 and an even channels >= 2, "
                              f"got layers={layers}, channels={channels}")
        self.channels, self.layers, self.num_classes = channels, layers, num_classes
        stem = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        c_pp, c_p, c_cur = stem, stem, channels
        reduction_prev = False
        side = resolution
        cells: List[DartsSearchCell] = []
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                c_cur *= 2
            cells.append(DartsSearchCell(c_pp, c_p, c_cur, reduction, reduction_prev, side,
                                         track_running_stats))
            side = side // 2 if reduction else side
            reduction_prev = reduction
            c_pp, c_p = c_p, MULTIPLIER * c_cur
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        edge_names = [f"{node}<-{src}" for node, src in EDGES]
        self._add_alpha("normal", edge_names, PRIMITIVES)
        self._add_alpha("reduce", edge_names, PRIMITIVES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.mixing_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights["reduce" if cell.reduction else "normal"])
        return self.classifier(self.global_pooling(s1).flatten(1))

    def derive(self, temperature: Optional[float] = None) -> Arch:
        """DARTS' genotype (see :func:`spaces.darts.derive_genotype`) from softmax(α / T).

        ``T`` defaults to the supernet's current temperature, i.e. the one it mixed with in the
        last epoch (T = 1 for DARTS, T_end at the end of a TD-DARTS search). The op kept on an
        edge does not depend on T (argmax); the two edges kept per node can, because edges are
        ranked by the softmax weight of their strongest op. Weights are computed in float64 so
        that near T = 0 the ranking is not decided by float32 rounding.
        """
        return derive_genotype(self.mixing_weights_numpy(temperature), PRIMITIVES)

    def latency_choices(self, arch: Arch) -> Dict[str, List[str]]:
        """Per cell type, the op of each α row: the genotype's two kept inputs of node k + 2 are its
        entries 2k and 2k + 1; every other edge is dropped (``none``)."""
        out = {}
        for cell in ("normal", "reduce"):
            ops = ["none"] * len(EDGES)
            for k, (op, source) in enumerate(arch[cell]):
                ops[EDGES.index((k // 2 + 2, int(source)))] = op
            out[cell] = ops
        return out
