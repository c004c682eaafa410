"""The DARTS CNN search space (Liu, Simonyan & Yang, ICLR 2019) as a discrete raynas space.

A cell has two inputs (the outputs of the two previous cells, nodes 0 and 1), four intermediate
nodes 2..5 and outputs the concatenation of nodes 2..5. In the search supernet every node is fed
by all earlier nodes (14 mixed edges over 8 primitives, ``none`` included); a derived cell keeps
two inputs per node, each with one of the 7 real ops. A network has normal cells and, at 1/3 and
2/3 of its depth, reduction cells (stride 2 on the edges from the cell inputs, channels doubled).

Arch format (the single canonical form of this space; DARTS' ``Genotype`` with the concat left
out because it is always nodes 2..5)::

    {"normal": [[op, input], ...8 pairs], "reduce": [[op, input], ...8 pairs]}

Pairs 2k and 2k+1 feed node k+2; inputs are distinct node indices below k+2, in increasing order
(the two terms of a node are summed, so their order carries no meaning). The module imports no
torch: the static network lives in ``spaces/darts_net.py``, the supernet in
``spaces/darts_supernet.py``.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from raynas.arch import Arch
from raynas.errors import ArchError, ConfigError
from raynas.registry import register_space
from raynas.space import Decision, SearchSpace, require_choice, require_mapping

SPACE = "darts"
#: DARTS' primitives, in the order of its supernet α columns
PRIMITIVES: Tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                               "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: the ops a derived cell may use, from smallest to largest cost (params, then MACs)
GENOTYPE_OPS: Tuple[str, ...] = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "dil_conv_3x3",
                                 "dil_conv_5x5", "sep_conv_3x3", "sep_conv_5x5")
CELL_TYPES: Tuple[str, ...] = ("normal", "reduce")
STEPS = 4           # intermediate nodes per cell
MULTIPLIER = 4      # nodes concatenated into the cell output
STEM_MULTIPLIER = 3
#: (to, from) of the 14 supernet edges, in α row order: node 2 from 0, 1; node 3 from 0, 1, 2; ...
EDGES: Tuple[Tuple[int, int], ...] = tuple((i + 2, j) for i in range(STEPS) for j in range(i + 2))
_KERNEL = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "dil_conv_3x3": 3, "dil_conv_5x5": 5}

# Published genotypes (DARTS' genotypes.py), for reference and tests.
DARTS_V1: Arch = {
    "normal": [["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["skip_connect", 0], ["sep_conv_3x3", 1],
               ["skip_connect", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["skip_connect", 2]],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 0],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["avg_pool_3x3", 0]]}
DARTS_V2: Arch = {
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]]}


# ------------------------------------------------------------------ arch format
def _cell(arch: Mapping[str, Any], cell: str) -> List[List[Any]]:
    pairs = arch.get(cell)
    if not isinstance(pairs, (list, tuple)) or len(pairs) != 2 * STEPS:
        raise ArchError(cell, pairs, f"a list of {2 * STEPS} [op, input] pairs (2 per node 2..5)",
                        space=SPACE)
    out: List[List[Any]] = []
    for k in range(STEPS):
        node = k + 2
        items = []
        for slot in (2 * k, 2 * k + 1):
            pair = pairs[slot]
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ArchError(f"{cell}[{slot}]", pair, "an [op, input] pair", space=SPACE)
            op = require_choice(f"{cell}[{slot}] op", pair[0], GENOTYPE_OPS, SPACE)
            src = pair[1]
            if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= int(src) < node:
                raise ArchError(f"{cell}[{slot}] input", src, tuple(range(node)), space=SPACE,
                                hint=f"node {node} reads nodes 0..{node - 1}")
            items.append([op, int(src)])
        if items[0][1] == items[1][1]:
            raise ArchError(f"{cell} node {node} inputs", [items[0][1], items[1][1]],
                            "two distinct input nodes", space=SPACE)
        out.extend(sorted(items, key=lambda p: p[1]))
    return out


def _validate(arch: Any) -> Arch:
    arch = require_mapping(arch, SPACE)
    extra = sorted(set(arch) - set(CELL_TYPES))
    if extra:
        raise ArchError(extra[0], arch[extra[0]], list(CELL_TYPES), space=SPACE, hint="unknown field")
    return {cell: _cell(arch, cell) for cell in CELL_TYPES}


def from_genotype(normal: Sequence[Sequence[Any]], reduce: Sequence[Sequence[Any]]) -> Arch:
    """An arch from DARTS-style ``(op, input)`` lists (e.g. a ``Genotype``'s normal/reduce)."""
    return _validate({"normal": [list(p) for p in normal], "reduce": [list(p) for p in reduce]})


def count_ops(arch: Arch, op: str = "skip_connect") -> Dict[str, int]:
    """How many edges of each cell type use ``op``."""
    arch = _validate(arch)
    return {cell: sum(1 for name, _ in arch[cell] if name == op) for cell in CELL_TYPES}


# ------------------------------------------------------------------ derivation
def derive_genotype(weights: Mapping[str, np.ndarray], op_names: Sequence[str] = PRIMITIVES) -> Arch:
    """DARTS' rule: for each node keep the 2 incoming edges whose strongest non-``none`` weight is
    largest, and on each kept edge its strongest non-``none`` op.

    ``weights[cell]`` is the ``[14, len(op_names)]`` mixing-weight matrix of that cell type
    (rows in :data:`EDGES` order). Ties go to the lower input index and the earlier op.
    """
    op_names = tuple(op_names)
    real = [k for k, name in enumerate(op_names) if name != "none"]
    if not real:
        raise ConfigError("derivation needs at least one op other than 'none'")
    arch: Dict[str, List[List[Any]]] = {}
    for cell in CELL_TYPES:
        w = np.asarray(weights[cell], dtype=np.float64)
        if w.shape != (len(EDGES), len(op_names)):
            raise ConfigError(f"weights['{cell}'] must have shape {(len(EDGES), len(op_names))}, "
                              f"got {w.shape}")
        pairs: List[List[Any]] = []
        start = 0
        for k in range(STEPS):
            n_in = k + 2
            rows = w[start:start + n_in][:, real]
            strength = rows.max(axis=1)
            keep = sorted(np.argsort(-strength, kind="stable")[:2].tolist())
            for j in keep:
                pairs.append([op_names[real[int(np.argmax(rows[j]))]], int(j)])
            start += n_in
        arch[cell] = pairs
    return _validate(arch)


# ------------------------------------------------------------------ analytic cost
def _op_cost(op: str, C: int, stride: int, side_out: int) -> Tuple[int, int]:
    """(params, MACs) of one eval-network op on ``C`` channels with output side ``side_out``."""
    area = side_out * side_out
    if op == "skip_connect":
        return (C * C + 2 * C, C * C * area) if stride == 2 else (0, 0)
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return 0, 0
    k = _KERNEL[op]
    unit_params, unit_macs = C * k * k + C * C + 2 * C, (C * k * k + C * C) * area
    return (2 * unit_params, 2 * unit_macs) if op.startswith("sep") else (unit_params, unit_macs)


def network_cost(arch: Arch, channels: int, layers: int, num_classes: int, resolution: int,
                 auxiliary: bool = False) -> Dict[str, float]:
    """Params and MACs (conv + linear, as FlopCounterMode counts) of the eval network, batch 1;
    the auxiliary head, used only in training, counts only when ``auxiliary``."""
    arch = _validate(arch)
    C = channels
    side = resolution
    stem = STEM_MULTIPLIER * C
    params, macs = 3 * stem * 9 + 2 * stem, 3 * stem * 9 * side * side
    c_pp, c_p, c_cur = stem, stem, C
    aux_channels = None
    for i in range(layers):
        reduction = i in reduction_layers(layers)
        if reduction:
            c_cur *= 2
        side_in = side
        side_out = side // 2 if reduction else side
        # preprocess s0: a 1x1 ReLU-conv-BN, or after a reduction cell a FactorizedReduce (two
        # strided 1x1 convs of C/2 outputs each): the same count at the side of s1
        params += c_pp * c_cur + 2 * c_cur
        macs += c_pp * c_cur * side_in * side_in
        params += c_p * c_cur + 2 * c_cur
        macs += c_p * c_cur * side_in * side_in
        cell = arch["reduce" if reduction else "normal"]
        for op, src in cell:
            stride = 2 if reduction and src < 2 else 1
            p, m = _op_cost(op, c_cur, stride, side_out)
            params, macs = params + p, macs + m
        c_pp, c_p = c_p, MULTIPLIER * c_cur
        side = side_out
        if i == 2 * layers // 3:
            aux_channels, aux_side = c_p, side
    params += c_p * num_classes + num_classes
    macs += c_p * num_classes
    if auxiliary and aux_channels is not None:
        pooled = (aux_side - 5) // 3 + 1
        conv2 = pooled - 1
        params += aux_channels * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * num_classes + num_classes
        macs += aux_channels * 128 * pooled * pooled + 128 * 768 * 4 * conv2 * conv2 + 768 * num_classes
    return {"params": float(params), "macs": float(macs), "flops": float(2 * macs)}


def reduction_layers(layers: int) -> Tuple[int, int]:
    """Indices of the two reduction cells of a ``layers``-cell network (DARTS: 1/3 and 2/3)."""
    return layers // 3, 2 * layers // 3


# ------------------------------------------------------------------ space
_PAIRS: Dict[int, Tuple[str, ...]] = {
    k: tuple(f"{a},{b}" for a, b in itertools.combinations(range(k + 2), 2)) for k in range(STEPS)}


@register_space(SPACE)
class DartsSpace(SearchSpace):
    """DARTS CNN cells (normal + reduction; 4 nodes, 2 inputs each, 7 ops): ~10^18 genotypes.

    Options describe the network a genotype is trained as (DARTS' CIFAR recipe by default:
    20 cells, 36 initial channels, auxiliary head). ``build_search_network`` builds the
    differentiable supernet the genotypes are searched with (8 cells, 16 channels by default).
    """

    def __init__(self, channels: int = 36, layers: int = 20, num_classes: int = 10,
                 resolution: int = 32, auxiliary: bool = True) -> None:
        for name, value in (("channels", channels), ("layers", layers), ("num_classes", num_classes),
                            ("resolution", resolution)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"darts option '{name}' must be a positive int, got {value!r}")
        if layers < 3:
            raise ConfigError(f"darts option 'layers' must be >= 3 (two reduction cells), got {layers}")
        if resolution % 4:
            raise ConfigError(f"darts option 'resolution' must be divisible by 4, got {resolution}")
        if channels % 2:
            raise ConfigError(f"darts option 'channels' must be even (factorized reduction), got {channels}")
        if not isinstance(auxiliary, bool):
            raise ConfigError(f"darts option 'auxiliary' must be true or false, got {auxiliary!r}")
        super().__init__(channels=channels, layers=layers, num_classes=num_classes,
                         resolution=resolution, auxiliary=auxiliary)
        self.channels, self.layers, self.num_classes = channels, layers, num_classes
        self.resolution, self.auxiliary = resolution, auxiliary

    def _make_decisions(self) -> List[Decision]:
        out = []
        for cell in CELL_TYPES:
            for k in range(STEPS):
                out.append(Decision(f"{cell}_node{k + 2}_inputs", _PAIRS[k]))
                out.append(Decision(f"{cell}_node{k + 2}_op0", GENOTYPE_OPS))
                out.append(Decision(f"{cell}_node{k + 2}_op1", GENOTYPE_OPS))
        return out

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        arch: Dict[str, List[List[Any]]] = {}
        for cell in CELL_TYPES:
            pairs: List[List[Any]] = []
            for k in range(STEPS):
                key = f"{cell}_node{k + 2}_inputs"
                text = values[key]
                if text not in _PAIRS[k]:
                    raise ArchError(key, text, _PAIRS[k], space=SPACE)
                a, b = (int(s) for s in text.split(","))
                pairs += [[values[f"{cell}_node{k + 2}_op0"], a], [values[f"{cell}_node{k + 2}_op1"], b]]
            arch[cell] = pairs
        return self.validate(arch)

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        arch = self.validate(arch)
        out: Dict[str, Any] = {}
        for cell in CELL_TYPES:
            for k in range(STEPS):
                (op0, a), (op1, b) = arch[cell][2 * k], arch[cell][2 * k + 1]
                out[f"{cell}_node{k + 2}_inputs"] = f"{a},{b}"
                out[f"{cell}_node{k + 2}_op0"] = op0
                out[f"{cell}_node{k + 2}_op1"] = op1
        return out

    def validate(self, arch: Arch) -> Arch:
        return _validate(arch)

    def cost(self, arch: Arch, num_classes: Optional[int] = None) -> Dict[str, float]:
        """Analytic ``params``/``macs``/``flops`` of the inference network (no auxiliary head)."""
        return network_cost(arch, self.channels, self.layers,
                            self.num_classes if num_classes is None else num_classes, self.resolution)

    def describe(self, arch: Arch) -> str:
        arch = self.validate(arch)
        short = {"skip_connect": "skip", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3",
                 "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3",
                 "dil_conv_5x5": "dil5"}
        parts = []
        for cell in CELL_TYPES:
            nodes = [" ".join(f"{short[op]}({src})" for op, src in arch[cell][2 * k:2 * k + 2])
                     for k in range(STEPS)]
            parts.append(f"{cell}: " + " | ".join(nodes))
        return "; ".join(parts)

    def input_resolution(self, arch: Arch) -> int:
        return self.resolution

    def build_static(self, arch: Arch, num_classes: Optional[int] = None, **options: Any):
        """The retrain network (``DartsNetwork``): 20 cells, 36 channels, auxiliary head by default."""
        from spaces.darts_net import DartsNetwork

        return DartsNetwork(self.validate(arch), channels=self.channels, layers=self.layers,
                            num_classes=self.num_classes if num_classes is None else num_classes,
                            auxiliary=self.auxiliary, **options)

    def build_search_network(self, num_classes: Optional[int] = None, **options: Any):
        """The differentiable supernet (``DartsSupernet``; 8 cells, 16 channels by default)."""
        from spaces.darts_supernet import DartsSupernet

        return DartsSupernet(self, num_classes=self.num_classes if num_classes is None else num_classes,
                             resolution=self.resolution, **options)
