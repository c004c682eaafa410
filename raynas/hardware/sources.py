"""One way to name a device's latency everywhere (``raynas search``, ``raynas specialize``, the
Python API): a path and, for a per-arch table, a column.

- an OFA-format lookup table: one ``*.yaml`` file, or a folder of ``<res>_lookup_table.yaml``
  (``raynas lut build`` writes such a folder) -> :class:`~raynas.hardware.LatencyLUT`;
- a per-arch table (CSV/Parquet, e.g. NAS-Bench-201's measured latencies) and the column
  holding the device's milliseconds -> :class:`~raynas.evaluators.tabular.TabularCost`.

Either becomes the cost metric ``latency_ms``, known before evaluation, so constraints
(``latency_ms<=20``) and objectives (``latency_ms:min``) can use it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from raynas.errors import ConfigError, DataError
from raynas.hardware.lut import LatencyLUT, PathLike

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
LATENCY_METRIC = "latency_ms"


def is_per_arch_table(path: PathLike) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def latency_source(path: PathLike, space: Any, column: Optional[str] = None, key: str = "arch_str",
                   metric: str = LATENCY_METRIC, check_coverage: bool = True) -> Tuple[str, Any]:
    """``(device name, cost function arch -> {metric: ms})`` for a lookup table or a table column.

    The name is the column, or the table's file/folder name. With ``check_coverage`` a lookup
    table must price every operator of every resolution of ``space`` (see
    :func:`check_lut_coverage`), and a column must exist: checked here, before any work.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"latency table {p} does not exist (build one for a space with "
                        "'raynas lut build --space NAME --output DIR')")
    if is_per_arch_table(p):
        if not column:
            raise ConfigError(f"{p} is a per-arch table: name the column of the device's milliseconds "
                              "with --latency-column (e.g. lat_pixel3)")
        from raynas.evaluators.tabular import TabularCost

        cost = TabularCost(p, metrics={metric: column}, space=space, key=key)
        cost.check()
        return column, cost
    if column:
        raise ConfigError(f"--latency-column {column!r} names a column of a CSV/Parquet table, but {p} is a "
                          "lookup table (YAML file or folder)")
    lut = LatencyLUT(p, space, metric=metric)
    if check_coverage:
        check_lut_coverage(lut)
    return (p.stem if p.is_file() else p.name), lut


def check_lut_coverage(lut: LatencyLUT, seed: int = 0) -> None:
    """Raise one error, before any work, when ``lut`` cannot price some arch of its space: a
    resolution without a table, or operators missing from a table (over the operators that
    :func:`~raynas.hardware.collect_descriptors` finds for the space)."""
    from raynas.hardware.lut import load_table_cached
    from raynas.hardware.lut_builder import collect_descriptors

    space = lut.space
    groups = collect_descriptors(space, rng=np.random.default_rng(seed))
    hint = (f"build tables for this space with: raynas lut build --space {space.name}"
            f"{_option_flags(space)} --output DIR")
    missing_res = []
    for resolution in sorted(groups, key=lambda r: (r is None, r or 0)):
        try:
            table = load_table_cached(lut.table_path(resolution))
        except DataError:
            missing_res.append(resolution)
            continue
        missing = table.missing(groups[resolution])
        if missing:
            raise DataError(f"latency table {table.source} has no entry for {len(missing)} of the "
                            f"{len(groups[resolution])} operators of space '{space.name}' at resolution "
                            f"{resolution}, e.g. '{missing[0]}'; {hint}")
    if missing_res:
        have = sorted(p.name for p in lut.path.glob(lut.pattern.format(resolution="*"))) if lut.path.is_dir() else []
        raise DataError(f"{lut.path} has no latency table for resolution(s) {missing_res} of space "
                        f"'{space.name}' (has: {', '.join(have) or 'none'}); {hint}")


def _option_flags(space: Any) -> str:
    """The ``-o key=value`` flags that recreate ``space`` from its registry name (non-default options)."""
    import json
    import shlex

    try:
        from raynas.registry import create_space

        default = create_space(space.name).spec().get("options", {})
    except Exception:  # noqa: BLE001 - a space that needs options: show them all
        default = {}
    options = space.spec().get("options", {})
    return "".join(" -o " + shlex.quote(f"{k}={json.dumps(v, separators=(',', ':'))}")
                   for k, v in sorted(options.items()) if default.get(k) != v)
