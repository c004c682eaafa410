"""The NAS-Bench-201 network: cells of the ops in spaces/nb201_ops.py in NB201's macro skeleton."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn

from spaces.nb201 import EDGES, NUM_NODES
from spaces.nb201_ops import ResNetBasicBlock, make_op


class NB201Cell(nn.Module):
    """One NB201 cell: node j = sum over i < j of op_{j<-i}(node i); returns node 3."""

    def __init__(self, edges: Sequence[str], C_in: int, C_out: int, stride: int = 1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.edges = tuple(edges)
        self.ops = nn.ModuleList(
            make_op(op, C_in if i == 0 else C_out, C_out, stride if i == 0 else 1, affine,
                    track_running_stats)
            for (j, i), op in zip(EDGES, self.edges))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in range(1, NUM_NODES):
            total = None
            for i in range(j):
                y = self.ops[k](nodes[i])
                total = y if total is None else total + y
                k += 1
            nodes.append(total)
        return nodes[-1]


class NB201Network(nn.Module):
    """NB201's ``TinyNetwork`` for one cell: stem, 3 x (N cells), 2 reduction blocks, head.

    ``forward`` returns logits; ``forward_features`` the BN-ReLU'd map before global pooling.
    """

    def __init__(self, edges: Sequence[str], num_classes: int = 10, channels: int = 16,
                 cells_per_stage: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        C = channels
        self.edges = tuple(edges)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, kernel_size=3, padding=1, bias=False),
                                  nn.BatchNorm2d(C))
        widths = [C] * cells_per_stage + [2 * C] + [2 * C] * cells_per_stage + [4 * C] + [4 * C] * cells_per_stage
        reductions = ([False] * cells_per_stage + [True] + [False] * cells_per_stage + [True]
                      + [False] * cells_per_stage)
        cells: List[nn.Module] = []
        C_prev = C
        for width, reduce in zip(widths, reductions):
            cells.append(ResNetBasicBlock(C_prev, width, 2) if reduce else NB201Cell(self.edges, C_prev, width))
            C_prev = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.lastact(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.global_pooling(self.forward_features(x)).flatten(1)
        return self.classifier(out)
