"""The NAS-Bench-201 cell as a differentiable supernet (NB201's ``TinyNetworkDarts``).

Every edge mixes the five NB201 ops built by :func:`spaces.nb201_ops.make_op` (affine-free BN in
the cells, as NB201's DARTS runs use); one α matrix ``cell`` of shape [6, 5] is shared by all
cells. The macro skeleton is the static network's (spaces/nb201_net.py): stem, N cells per stage,
residual reduction blocks, BN-ReLU, global pooling, classifier.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from raynas.arch import Arch
from raynas.differentiable.mixed import DifferentiableSupernet, MixedOp
from raynas.errors import ConfigError
from spaces.nb201 import EDGES, NUM_NODES, OP_NAMES
from spaces.nb201_ops import ResNetBasicBlock, make_op

GROUP = "cell"


def derive_cell(weights: np.ndarray, op_names=OP_NAMES) -> Arch:
    """NB201's rule: the strongest op on every edge (``none`` included; ties: the earlier op)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(EDGES), len(op_names)):
        raise ConfigError(f"NB201 weights must have shape {(len(EDGES), len(op_names))}, got {w.shape}")
    return {"edges": [op_names[int(np.argmax(row))] for row in w]}


class NB201SearchCell(nn.Module):
    """Node j = Σ_{i<j} mixed_{j<-i}(node i); returns node 3."""

    def __init__(self, C_in: int, C_out: int, resolution: int, stride: int = 1,
                 track_running_stats: bool = False) -> None:
        super().__init__()
        edges = []
        for e, (j, i) in enumerate(EDGES):
            c_in, s = (C_in, stride) if i == 0 else (C_out, 1)
            ops = {name: make_op(name, c_in, C_out, s, affine=False,
                                 track_running_stats=track_running_stats) for name in OP_NAMES}
            edges.append(MixedOp(ops, group=GROUP, edge=e, C_in=c_in, C_out=C_out, stride=s,
                                 resolution=resolution if i == 0 else resolution // stride))
        self.edges = nn.ModuleList(edges)

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                indices: Optional[List[int]] = None) -> torch.Tensor:
        """``indices``: the one op each edge runs (hard relaxations), else every op mixes."""
        nodes = [x]
        e = 0
        for j in range(1, NUM_NODES):
            total = None
            for i in range(j):
                y = self.edges[e](nodes[i], weights[e], None if indices is None else indices[e])
                total = y if total is None else total + y
                e += 1
            nodes.append(total)
        return nodes[-1]


class NB201Supernet(DifferentiableSupernet):
    """Stem (C) + 3 stages of ``cells_per_stage`` search cells (C, 2C, 4C) with NB201's residual
    reduction blocks between them, BN-ReLU, global pooling and a linear classifier.

    NB201 searches with 5 cells per stage; fewer cells make a cheaper proxy supernet whose α
    still select one cell for the 5-cell network the benchmark table describes.
    """

    def __init__(self, space, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5,
                 resolution: int = 32, track_running_stats: bool = False) -> None:
        super().__init__(space)
        for name, value in (("channels", channels), ("cells_per_stage", cells_per_stage)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"NB201 supernet option '{name}' must be a positive int, got {value!r}")
        C = channels
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: List[nn.Module] = []
        c_prev, side = C, resolution
        for stage in range(3):
            width = C * 2 ** stage
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, width, 2))
                side //= 2
            for _ in range(cells_per_stage):
                cells.append(NB201SearchCell(width, width, side, 1, track_running_stats))
            c_prev = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self._add_alpha(GROUP, [f"{j}<-{i}" for j, i in EDGES], OP_NAMES)

    supports_hard_paths = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one draw per forward pass, shared by every cell (GDAS samples once per network too)
        all_weights, all_indices = self.forward_weights()
        weights = all_weights[GROUP]
        indices = None if all_indices is None else all_indices[GROUP]
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, weights, indices) if isinstance(cell, NB201SearchCell) else cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))

    def derive(self, temperature: Optional[float] = None) -> Arch:
        """The argmax op of every edge. It is the same at every temperature T > 0 (softmax(α/T)
        keeps the order of α); ``temperature`` is accepted for the common interface."""
        return derive_cell(self.mixing_weights_numpy(temperature)[GROUP])

    def latency_choices(self, arch: Arch) -> Dict[str, List[str]]:
        """Every edge of the cell, in α row order (the NB201 arch lists all six)."""
        return {GROUP: list(arch["edges"])}
