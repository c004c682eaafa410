"""The NAS-Bench-201 cell search space (Dong & Yang, ICLR 2020).

A cell is a DAG of 4 nodes; each of its 6 edges ``j <- i`` (i < j) carries one op of
``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3``; node j is the sum of its
incoming edges and node 3 is the cell output. The network is NB201's macro skeleton: a 3x3 conv
stem (C=16) + BN, three stages of 5 identical cells (C = 16, 32, 64) with a residual reduction
block between stages, then BN-ReLU, global average pooling and a linear classifier.

Arch format (the single canonical form of this space)::

    {"edges": [op(1<-0), op(2<-0), op(2<-1), op(3<-0), op(3<-1), op(3<-2)]}

which is also the order of the ops in NB201's ``arch_str``
(``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``); :func:`to_arch_str` / :func:`from_arch_str` convert.
Isomorphic cells (same function) are identified by :func:`cell_signature` and mapped to one
representative by :func:`canonical_cell`.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from raynas.arch import Arch, arch_id
from raynas.errors import ArchError, ConfigError
from raynas.registry import register_space
from raynas.space import Decision, SearchSpace, require_choice, require_mapping
SPACE = "nb201"
#: op names as NB201 writes them (the module stays free of torch: Tune trial processes import it
#: to look archs up in tables; the network lives in spaces/nb201_net.py)
OP_NAMES: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
#: (to, from) of each edge, in arch order
EDGES: Tuple[Tuple[int, int], ...] = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))
#: decision choices from smallest to largest cost (params, then FLOPs)
OPS_BY_COST: Tuple[str, ...] = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
_CONV_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


# ------------------------------------------------------------------ arch strings
def to_arch_str(arch: Arch) -> str:
    """NB201's string of an arch, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
    edges = _edges(arch)
    groups = []
    for j in range(1, NUM_NODES):
        ops = [f"{edges[k]}~{i}" for k, (jj, i) in enumerate(EDGES) if jj == j]
        groups.append("|" + "|".join(ops) + "|")
    return "+".join(groups)


def from_arch_str(text: str) -> Arch:
    """Parse an NB201 ``arch_str`` (ops within a node may come in any input order)."""
    if not isinstance(text, str):
        raise ArchError("arch_str", text, "a string like '|nor_conv_3x3~0|+|...~0|...~1|+|...|'",
                        space=SPACE)
    groups = text.strip().split("+")
    if len(groups) != NUM_NODES - 1:
        raise ArchError("arch_str", text, f"{NUM_NODES - 1} node groups separated by '+'", space=SPACE)
    ops: Dict[Tuple[int, int], str] = {}
    for j, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")):
            raise ArchError("arch_str", text, "node groups written as '|op~i|op~i|'", space=SPACE)
        items = [s for s in group[1:-1].split("|")]
        for item in items:
            op, sep, src = item.partition("~")
            if not sep or not src.isdigit():
                raise ArchError("arch_str", text, "edges written as 'op~input_index'", space=SPACE,
                                hint=f"could not parse '{item}' of node {j}")
            i = int(src)
            if op not in OP_NAMES:
                raise ArchError(f"arch_str node {j} input {i}", op, OP_NAMES, space=SPACE)
            if i >= j or (j, i) in ops:
                raise ArchError("arch_str", text, f"node {j} takes each input 0..{j - 1} exactly once",
                                space=SPACE)
            ops[(j, i)] = op
        if len([k for k in ops if k[0] == j]) != j:
            raise ArchError("arch_str", text, f"node {j} takes each input 0..{j - 1} exactly once",
                            space=SPACE)
    return {"edges": [ops[e] for e in EDGES]}


def _edges(arch: Arch) -> List[str]:
    arch = require_mapping(arch, SPACE)
    extra = sorted(set(arch) - {"edges"})
    if extra:
        raise ArchError(extra[0], arch[extra[0]], ["edges"], space=SPACE, hint="unknown field")
    edges = arch.get("edges")
    if not isinstance(edges, (list, tuple)) or len(edges) != len(EDGES):
        raise ArchError("edges", edges, f"a list of {len(EDGES)} op names for edges "
                        + ", ".join(f"{j}<-{i}" for j, i in EDGES), space=SPACE)
    return [require_choice(f"edges[{k}] ({j}<-{i})", op, OP_NAMES, SPACE)
            for k, ((j, i), op) in enumerate(zip(EDGES, edges))]


# ------------------------------------------------------------------ isomorphism
def cell_signature(arch: Arch) -> str:
    """A string that is equal for two cells exactly when NB201's rules make them compute the same
    function: ``none`` and any op applied to an all-zero node give zero, zero terms vanish from
    sums, ``skip_connect`` passes its input's terms through, and sums are unordered.

    Like NB201's ``to_unique_str(consider_zero=True)`` but with zero detected consistently
    (NB201 only recognises a node that is a single zero term, so e.g. ``(#+#)@nor_conv_3x3``
    survives there); hence the classes are NB201's ``unique_str`` classes or unions of them.
    """
    edges = _edges(arch)
    op_of = dict(zip(EDGES, edges))
    nodes: Dict[int, Tuple[str, ...]] = {0: ("x",)}
    for j in range(1, NUM_NODES):
        terms: List[str] = []
        for i in range(j):
            op, src = op_of[(j, i)], nodes[i]
            if op == "none" or not src:
                continue
            if op == "skip_connect":
                terms.extend(src)
            else:
                terms.append(f"{op}({'+'.join(src)})")
        nodes[j] = tuple(sorted(terms))
    return "+".join(nodes[NUM_NODES - 1]) or "zero"


def nb201_unique_str(arch: Arch) -> str:
    """NAS-Bench-201's own ``Structure.to_unique_str(consider_zero=True)``, reproduced exactly
    (the ``unique_str`` column of the benchmark tables)."""
    edges = _edges(arch)
    op_of = dict(zip(EDGES, edges))
    nodes = {0: "0"}
    for j in range(1, NUM_NODES):
        parts = []
        for i in range(j):
            op, src = op_of[(j, i)], nodes[i]
            if op == "none" or src == "#":
                parts.append("#")
            elif op == "skip_connect":
                parts.append(src)
            else:
                parts.append(f"({src})@{op}")
        nodes[j] = "+".join(sorted(parts))
    return nodes[NUM_NODES - 1]


_CLASS_KEYS = {"function": cell_signature, "unique_str": nb201_unique_str}


@functools.lru_cache(maxsize=None)
def _representatives(key: str) -> Dict[str, Tuple[str, ...]]:
    """Class key -> the member of its class that comes first in NB201 op order (all 15,625)."""
    key_of = _CLASS_KEYS[key]
    reps: Dict[str, Tuple[str, ...]] = {}
    for combo in itertools.product(OP_NAMES, repeat=len(EDGES)):
        k = key_of({"edges": list(combo)})
        if k not in reps:  # product() walks in NB201 op order, so the first seen is the least
            reps[k] = combo
    return reps


def canonical_cell(arch: Arch, key: str = "function") -> Arch:
    """The representative of ``arch``'s isomorphism class: isomorphic cells give the same arch.

    ``key="function"`` (default) groups by :func:`cell_signature` (4,930 classes, each a union of
    NB201 ``unique_str`` classes); ``key="unique_str"`` reproduces NB201's own 6,466 classes.
    The representative is the class member whose edges come first in NB201's op order.
    """
    if key not in _CLASS_KEYS:
        raise ConfigError(f"canonical_cell key must be one of {sorted(_CLASS_KEYS)}, got {key!r}")
    return {"edges": list(_representatives(key)[_CLASS_KEYS[key](arch)])}


def class_representatives(key: str = "unique_str") -> List[Arch]:
    """One arch per isomorphism class under ``key`` (see :func:`canonical_cell`), in NB201 op
    order: what isomorphism-aware sampling draws from."""
    if key not in _CLASS_KEYS:
        raise ConfigError(f"key must be one of {sorted(_CLASS_KEYS)}, got {key!r}")
    return [{"edges": list(edges)} for edges in _representatives(key).values()]


def num_isomorphism_classes(key: str = "function") -> int:
    """How many distinct cells the space holds under ``key`` (see :func:`canonical_cell`)."""
    if key not in _CLASS_KEYS:
        raise ConfigError(f"key must be one of {sorted(_CLASS_KEYS)}, got {key!r}")
    return len(_representatives(key))


# ------------------------------------------------------------------ space
@register_space(SPACE)
class NB201Space(SearchSpace):
    """NAS-Bench-201 cell space: 6 edges x 5 ops (15,625 archs, 6,466 NB201 unique cells)."""

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 resolution: int = 32) -> None:
        for name, value in (("channels", channels), ("cells_per_stage", cells_per_stage),
                            ("num_classes", num_classes), ("resolution", resolution)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"nb201 option '{name}' must be a positive int, got {value!r}")
        if resolution % 4:
            raise ConfigError(f"nb201 option 'resolution' must be divisible by 4 (two stride-2 "
                              f"reductions), got {resolution}")
        super().__init__(channels=channels, cells_per_stage=cells_per_stage,
                         num_classes=num_classes, resolution=resolution)
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.num_classes, self.resolution = num_classes, resolution

    def _make_decisions(self) -> List[Decision]:
        return [Decision(f"edge_{j}_{i}", OPS_BY_COST) for j, i in EDGES]

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        return self.validate({"edges": [values[f"edge_{j}_{i}"] for j, i in EDGES]})

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        return {f"edge_{j}_{i}": op for (j, i), op in zip(EDGES, _edges(arch))}

    def validate(self, arch: Arch) -> Arch:
        return {"edges": _edges(arch)}

    def equivalence_key(self, arch: Arch) -> str:
        """Isomorphic cells (same function, see :func:`canonical_cell`) share one key, so a search
        queries one cell of each of the 4,930 classes at most."""
        return arch_id(canonical_cell(arch))

    def table_key(self, arch: Arch) -> str:
        """The key tabular benchmarks index this arch by (NB201's ``arch_str``)."""
        return to_arch_str(arch)

    def arch_from_key(self, key: str) -> Arch:
        return from_arch_str(key)

    def describe(self, arch: Arch) -> str:
        return to_arch_str(arch)

    def build_static(self, arch: Arch, num_classes: int | None = None):
        from spaces.nb201_net import NB201Network

        return NB201Network(_edges(arch), num_classes=self.num_classes if num_classes is None else num_classes,
                            channels=self.channels, cells_per_stage=self.cells_per_stage)

    def representatives(self, key: str = "unique_str") -> List[Arch]:
        """One arch per isomorphism class (:func:`class_representatives`)."""
        return class_representatives(key)

    def build_supernet(self, num_classes: int | None = None, iso_key: str | None = None,
                       split_edge: int | None = None, **options):
        """The single-path weight-sharing supernet (spaces/nb201_oneshot.py): one weight set per
        (cell, edge, op). ``iso_key`` serves each arch by its isomorphism-class representative;
        ``split_edge`` makes it a few-shot supernet split on that edge."""
        from spaces.nb201_oneshot import NB201OneShotSupernet

        if options:
            raise ConfigError(f"unknown supernet options for space 'nb201': {sorted(options)}; "
                              "known: iso_key, split_edge")
        return NB201OneShotSupernet(self, self.num_classes if num_classes is None else num_classes,
                                    iso_key=iso_key, split_edge=split_edge)

    def build_search_network(self, num_classes: int | None = None, **options):
        """The differentiable (DARTS) supernet of this cell space (spaces/nb201_supernet.py)."""
        from spaces.nb201_supernet import NB201Supernet

        options = {"channels": self.channels, "cells_per_stage": self.cells_per_stage,
                   "resolution": self.resolution, **options}
        return NB201Supernet(self, num_classes=self.num_classes if num_classes is None else num_classes,
                             **options)

    def input_resolution(self, arch: Arch) -> int:
        return self.resolution

    def cost(self, arch: Arch, num_classes: int | None = None) -> Dict[str, float]:
        """Analytic ``params`` and ``macs`` / ``flops`` (conv + linear, 2 FLOPs per MAC, as
        FlopCounterMode counts) of the built network at ``resolution``, batch 1."""
        edges = _edges(arch)
        classes = self.num_classes if num_classes is None else num_classes
        C, R = self.channels, self.resolution
        params = 3 * C * 9 + 2 * C  # stem conv + BN
        macs = 3 * C * 9 * R * R
        width, side = C, R
        for stage in range(3):
            if stage > 0:  # ResNetBasicBlock(width -> 2 width, stride 2)
                out, side = 2 * width, side // 2
                params += width * out * 9 + 2 * out + out * out * 9 + 2 * out + width * out
                macs += (width * out * 9 + out * out * 9 + width * out) * side * side
                width = out
            for op in edges:
                k = _CONV_KERNEL.get(op)
                if k is not None:
                    params += self.cells_per_stage * (width * width * k * k + 2 * width)
                    macs += self.cells_per_stage * width * width * k * k * side * side
        params += 2 * width + width * classes + classes  # lastact BN + classifier
        macs += width * classes
        return {"params": float(params), "macs": float(macs), "flops": float(2 * macs)}
