"""The expected-latency loss of a differentiable search: its lookup table, read from a file or
measured for the supernet, checked against the supernet's α, and the latency terms the search
adds to the α loss and to each epoch's record.

The α loss becomes ``CE + λ·E[latency]`` with ``E[latency] = Σ w·LUT`` over the supernet's mixing
weights (:class:`~raynas.hardware.expected_latency.OperatorLatencyTable`). E[latency] depends on
α only, so its gradient simply adds to the CE gradient of either DARTS order.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from raynas.errors import CheckpointError, ConfigError
from raynas.hardware.expected_latency import OperatorLatencyTable, build_latency_table, darts_op_instances

#: the ``latency_table`` value that times the configured supernet's ops instead of reading a file
MEASURE = "measure"
REBUILD_HINT = ("rebuild it for this supernet: latency_table='measure' times its ops now, or "
                "raynas.differentiable.latency.build_supernet_latency_table(supernet).save(path) "
                "writes a reusable table")


def build_supernet_latency_table(supernet, device: str = "cpu", batch_size: int = 1, warmup: int = 10,
                                 repeats: int = 30, threads: Optional[int] = 1) -> OperatorLatencyTable:
    """Time every candidate op of every mixed op of ``supernet`` at its feature-map shape on
    ``device`` (median of ``repeats`` runs, in eval mode, on a copy of the op) and sum each edge
    over the cells that share its α row. Only the mixed edges are timed (``fixed_ms`` = 0): the
    rest of the network is the same for every arch and does not change α's gradient."""
    from raynas.hardware.measure import time_module

    def timer(module, shape) -> float:
        return time_module(copy.deepcopy(module), shape, device, warmup=warmup, repeats=repeats,
                           threads=threads).median_ms

    instances, op_names, num_edges = darts_op_instances(supernet, batch_size)
    info = {"supernet": type(supernet).__name__, "space": getattr(supernet.space, "name", ""),
            "batch_size": int(batch_size), "statistic": "median", "repeats": int(repeats),
            "threads": threads, "covers": "mixed edges only (fixed_ms = 0)"}
    return build_latency_table(instances, op_names, num_edges, timer, device=str(device), info=info)


def check_table_matches(table: OperatorLatencyTable, supernet, source: str = "the latency table") -> None:
    """ConfigError naming every group, edge count or op list where ``table`` and the supernet's α
    differ, and how to rebuild the table."""
    groups = list(supernet.alphas.keys())
    problems: List[str] = []
    if set(table.tables) != set(groups):
        problems.append(f"groups {sorted(table.tables)} in the table, {sorted(groups)} in the supernet")
    for group in groups:
        if group not in table.tables:
            continue
        edges, ops = len(supernet.edge_names(group)), tuple(supernet.op_names(group))
        if table.tables[group].shape[0] != edges:
            problems.append(f"group '{group}' has {table.tables[group].shape[0]} edges in the table, "
                            f"{edges} in the supernet")
        if tuple(table.op_names[group]) != ops:
            problems.append(f"group '{group}' has ops {list(table.op_names[group])} in the table, "
                            f"{list(ops)} (in this order) in the supernet")
    if problems:
        raise ConfigError(f"{source} does not match the {type(supernet).__name__}: " + "; ".join(problems)
                          + f"; {REBUILD_HINT}")


def resolve_latency_table(spec: str, supernet, device: str = "cpu",
                          threads: Optional[int] = 1) -> OperatorLatencyTable:
    """The table a search config names: ``"measure"`` times the supernet's ops on ``device``, any
    other value is the path of a saved table; either way it must match the supernet's α."""
    if spec == MEASURE:
        table = build_supernet_latency_table(supernet, device=device, threads=threads)
        source = "the measured latency table"
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"latency table file {path} does not exist; give a table saved by "
                              f"OperatorLatencyTable.save, or '{MEASURE}' to time this supernet's ops")
        try:
            table = OperatorLatencyTable.load(path)
        except CheckpointError as exc:
            raise ConfigError(f"cannot use latency table {path}: {exc}; {REBUILD_HINT}") from exc
        source = f"latency table {path}"
    check_table_matches(table, supernet, source)
    return table


def latency_penalty(supernet, table: OperatorLatencyTable, lam: float) -> Callable[[], torch.Tensor]:
    """``() -> λ·E[latency]`` under the supernet's current mixing weights (differentiable in α)."""
    lam = float(lam)

    def penalty() -> torch.Tensor:
        return lam * table.expected(supernet.mixing_weights())

    return penalty


def latency_record(supernet, table: OperatorLatencyTable, arch: Dict[str, Any]) -> Dict[str, float]:
    """``expected_latency_ms`` under the current mixing weights and ``derived_latency_ms``, the
    table latency of the derived discrete arch (edges it drops count as ``none``)."""
    with torch.no_grad():
        expected = float(table.expected({g: w.double().cpu() for g, w in supernet.mixing_weights().items()}))
    return {"expected_latency_ms": expected, "derived_latency_ms": table.latency(supernet.latency_choices(arch))}
