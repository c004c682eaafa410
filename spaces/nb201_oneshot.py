"""The NAS-Bench-201 cell as a single-path weight-sharing supernet (SPOS, Guo et al. ECCV 2020).

Every cell of the network holds one module per (edge, op) — the ops of
:mod:`spaces.nb201_ops`, each with its own weights and BN statistics; ``activate(arch)`` picks one
op per edge (the same cell everywhere, as NB201 stacks one cell) and ``forward`` runs only those
ops. The macro skeleton is the static network's (:class:`spaces.nb201_net.NB201Network`), and
parameter names match it, so ``export(arch)`` copies the chosen ops' weights into a static network
whose eval-mode outputs equal the supernet's.

Two build options change what serves an arch (both are recorded in the checkpoint):

* ``iso_key`` ("unique_str" or "function"): an arch runs the ops of the representative of its
  isomorphism class (:func:`spaces.nb201.canonical_cell`). Isomorphic cells compute the same
  function, so one path per class is trained and evaluated (Ning et al., NeurIPS 2021, call
  training on class representatives "de-isomorphic sampling").
* ``split_edge`` (0..5): Few-shot NAS (Zhao et al., ICML 2021). The supernet holds one full copy
  of its weights per op of that edge (5 sub-supernets). Until :meth:`split` every arch runs
  copy 0; ``split()`` copies it into the others and from then on an arch runs the copy of the op
  it has on the split edge. The ``few_shot`` sampling strategy trains the one-shot phase, splits,
  then trains the sub-supernets.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.supernet import Supernet
from spaces.layers.export import build_and_load
from spaces.nb201 import EDGES, NUM_NODES, OP_NAMES, canonical_cell
from spaces.nb201_ops import ResNetBasicBlock, make_op

#: ops that hold modules (``none`` is the absence of a term)
_MODULE_OPS = tuple(op for op in OP_NAMES if op != "none")
ISO_KEYS = ("unique_str", "function")


def live_nodes(edges: Sequence[str]) -> Tuple[bool, ...]:
    """Which cell nodes reach the output through non-``none`` edges (node 3 always does).

    A node nobody reads is not computed: its value cannot change the cell's output, exactly as
    the static network multiplies it by zero."""
    live = [False] * NUM_NODES
    live[NUM_NODES - 1] = True
    for i in range(NUM_NODES - 2, -1, -1):
        live[i] = any(live[j] and edges[k] != "none" for k, (j, src) in enumerate(EDGES) if src == i)
    return tuple(live)


class SinglePathCell(nn.Module):
    """One NB201 cell with every candidate op on every edge (C channels in and out, stride 1)."""

    def __init__(self, C: int, affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: make_op(op, C, C, 1, affine, track_running_stats) for op in _MODULE_OPS})
            for _ in EDGES)

    def forward(self, x: torch.Tensor, edges: Sequence[str], live: Sequence[bool]) -> torch.Tensor:
        nodes: List[Optional[torch.Tensor]] = [x]
        k = 0
        for j in range(1, NUM_NODES):
            total = None
            for i in range(j):
                edge, op = k, edges[k]
                k += 1
                if not live[j] or op == "none":
                    continue
                # summed in input order, as the static cell does (its zero terms add nothing)
                y = self.edges[edge][op](nodes[i])
                total = y if total is None else total + y
            if live[j] and total is None:
                total = torch.zeros_like(x)  # every input edge is `none`: the node is zero
            nodes.append(total)
        return nodes[-1]  # type: ignore[return-value]


class SinglePathNetwork(nn.Module):
    """NB201's skeleton around :class:`SinglePathCell` s: stem, 3 stages of N cells with residual
    reductions between them, BN-ReLU, global pooling, classifier (names as in NB201Network)."""

    def __init__(self, num_classes: int, channels: int, cells_per_stage: int) -> None:
        super().__init__()
        C = channels
        self.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: List[nn.Module] = []
        c_prev = C
        for stage in range(3):
            width = C * 2 ** stage
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, width, 2))
            cells.extend(SinglePathCell(width) for _ in range(cells_per_stage))
            c_prev = width
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, edges: Sequence[str], live: Sequence[bool]) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, edges, live) if isinstance(cell, SinglePathCell) else cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))

    def static_state(self, edges: Sequence[str]) -> Dict[str, torch.Tensor]:
        """This network's weights renamed to the static NB201Network of ``edges``."""
        out: Dict[str, torch.Tensor] = {}
        for name, tensor in self.state_dict().items():
            parts = name.split(".")
            if parts[0] == "cells" and len(parts) > 4 and parts[2] == "edges":
                c, e, op = parts[1], int(parts[3]), parts[4]
                if op != edges[e]:
                    continue
                name = ".".join(["cells", c, "ops", str(e)] + parts[5:])
            out[name] = tensor
        return out


class NB201OneShotSupernet(Supernet):
    """Single-path NB201 supernet; see the module docstring for ``iso_key`` and ``split_edge``."""

    def __init__(self, space, num_classes: int = 10, iso_key: Optional[str] = None,
                 split_edge: Optional[int] = None) -> None:
        super().__init__(space)
        if iso_key is not None and iso_key not in ISO_KEYS:
            raise ConfigError(f"nb201 supernet option iso_key must be one of {ISO_KEYS} or null, got {iso_key!r}")
        if split_edge is not None and (isinstance(split_edge, bool) or not isinstance(split_edge, int)
                                       or not 0 <= split_edge < len(EDGES)):
            raise ConfigError(f"nb201 supernet option split_edge must be an edge index 0..{len(EDGES) - 1} "
                              f"({', '.join(f'{k}: {j}<-{i}' for k, (j, i) in enumerate(EDGES))}) or null, "
                              f"got {split_edge!r}")
        self.num_classes = int(num_classes)
        self.iso_key, self.split_edge = iso_key, split_edge
        copies = 1 if split_edge is None else len(OP_NAMES)
        self.bodies = nn.ModuleList(SinglePathNetwork(self.num_classes, space.channels, space.cells_per_stage)
                                    for _ in range(copies))
        # persistent, so a checkpoint written after the split restores the split supernet
        self.register_buffer("is_split", torch.zeros((), dtype=torch.uint8))
        self._run: Tuple[str, ...] = ()
        self._live: Tuple[bool, ...] = ()
        self.activate(space.largest())

    @property
    def build_options(self) -> Dict[str, object]:
        """Keyword arguments of ``space.build_supernet`` that rebuild this supernet."""
        return {"iso_key": self.iso_key, "split_edge": self.split_edge}

    # ------------------------------------------------------------------ configuration
    def served_cell(self, arch: Arch) -> Arch:
        """The cell whose ops run for ``arch``: its class representative under ``iso_key``, else
        itself."""
        arch = self.space.validate(arch)
        return canonical_cell(arch, self.iso_key) if self.iso_key else arch

    def _apply_arch(self, arch: Arch) -> None:
        self._run = tuple(self.served_cell(arch)["edges"])
        self._live = live_nodes(self._run)

    def body_index(self, edges: Sequence[str]) -> int:
        """Which weight copy serves a cell: its op on the split edge once split, else copy 0."""
        if self.split_edge is None or not bool(self.is_split):
            return 0
        return OP_NAMES.index(edges[self.split_edge])

    @property
    def can_split(self) -> bool:
        return self.split_edge is not None

    @torch.no_grad()
    def split(self) -> bool:
        """Few-shot split: copy 0's weights and BN statistics into every sub-supernet. Returns
        False (and changes nothing) when already split."""
        if not self.can_split:
            raise ConfigError("this nb201 supernet was built without split_edge; build it with "
                              "supernet_options {'split_edge': 0..5} to train it few-shot")
        if bool(self.is_split):
            return False
        source = self.bodies[0].state_dict()
        for body in self.bodies[1:]:
            body.load_state_dict(source)
        self.is_split.fill_(1)
        return True

    # ------------------------------------------------------------------ forward / export
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._run:
            self.activate(self.space.largest())
        return self.bodies[self.body_index(self._run)](x, self._run, self._live)

    def export(self, arch: Arch) -> nn.Module:
        """Static :class:`NB201Network` of the served cell with this supernet's weights."""
        from spaces.nb201_net import NB201Network

        edges = tuple(self.served_cell(arch)["edges"])
        body = self.bodies[self.body_index(edges)]
        state = body.static_state(edges)
        return build_and_load(lambda: NB201Network(edges, num_classes=self.num_classes,
                                                   channels=self.space.channels,
                                                   cells_per_stage=self.space.cells_per_stage),
                              state, next(iter(state.values())))
