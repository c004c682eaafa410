"""Tabular evaluation: an arch's metrics looked up in a benchmark table (NAS-Bench-201 and alike).

Any CSV or Parquet file with one row per architecture works: a key column (for NB201 the
``arch_str`` the space's ``table_key`` produces; for other spaces a column of canonical arch
JSON) and metric columns. Evaluators pickle as path, options and space (never the table); each
process loads a table once (module-level cache keyed by path, size and mtime), and lookups are
dict hits.
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from raynas.arch import Arch, arch_id, canonical_json
from raynas.errors import ConfigError, DataError
from raynas.evaluators.base import Evaluator, Metrics

MetricSpec = Union[None, str, Sequence[str], Mapping[str, str]]

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CACHE: Dict[Tuple[str, int, int, str], "_Table"] = {}
_CACHE_LOCK = threading.Lock()


class _Table:
    """A loaded table: key -> row index, and one float64 array per numeric column."""

    def __init__(self, path: Path, key: str) -> None:
        import pandas as pd

        try:
            frame = (pd.read_parquet(path) if path.suffix.lower() in _PARQUET_SUFFIXES
                     else pd.read_csv(path))
        except Exception as exc:  # pandas raises many types for a malformed file
            raise DataError(f"cannot read table {path}: {exc}") from exc
        if key not in frame.columns:
            raise DataError(f"table {path} has no key column '{key}'; its columns are: "
                            f"{', '.join(map(str, frame.columns))}. Pass key=<column>.")
        keys = frame[key].astype(str).tolist()
        self.path, self.key = path, key
        self.row: Dict[str, int] = {k: i for i, k in enumerate(keys)}
        if len(self.row) != len(keys):
            dup = frame[key][frame[key].duplicated()].iloc[0]
            raise DataError(f"table {path}: key column '{key}' holds duplicates (e.g. {dup!r}); "
                            "one row per architecture is required")
        self.columns: Tuple[str, ...] = tuple(str(c) for c in frame.columns)
        self.numeric: Dict[str, np.ndarray] = {}
        for col in frame.columns:
            if col != key and pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
                self.numeric[str(col)] = frame[col].to_numpy(dtype=np.float64)
        self.num_rows = len(keys)

    def column(self, name: str) -> np.ndarray:
        if name not in self.numeric:
            kind = "is not numeric" if name in self.columns else "does not exist"
            raise DataError(f"column '{name}' of table {self.path} {kind}; numeric columns: "
                            f"{', '.join(self.numeric) or '(none)'}")
        return self.numeric[name]


def load_table(path: Union[str, os.PathLike], key: str) -> _Table:
    """The table at ``path`` indexed by ``key``, loaded once per process (reloaded if it changes)."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataError(f"table file not found: {p}. Pass the path of a CSV or Parquet file "
                        "with one row per architecture (e.g. ../shared/data/nb201/nb201_cifar10.csv)") from None
    if not p.is_file():
        raise DataError(f"table path is not a file: {p}")
    cache_key = (str(p.resolve()), st.st_size, st.st_mtime_ns, key)
    with _CACHE_LOCK:
        table = _CACHE.get(cache_key)
        if table is None:
            table = _Table(p, key)
            for old in [k for k in _CACHE if k[0] == cache_key[0] and k[3] == key]:
                del _CACHE[old]  # the file changed: drop the stale copy
            _CACHE[cache_key] = table
    return table


def _normalise_metrics(metrics: MetricSpec) -> Optional[Dict[str, str]]:
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return {metrics: metrics}
    if isinstance(metrics, Mapping):
        out = {str(k): str(v) for k, v in metrics.items()}
    else:
        out = {str(c): str(c) for c in metrics}
    if not out:
        raise ConfigError("metrics must name at least one column")
    return out


class _TableLookup:
    """Shared by the evaluator and the cost helper: space key function + column mapping."""

    def __init__(self, path: Union[str, os.PathLike], space: Any, key: str, metrics: MetricSpec) -> None:
        from raynas.registry import create_space
        from raynas.space import SearchSpace

        # absolute: the evaluator runs in Tune trial processes whose working directory differs
        self.path = str(Path(path).expanduser().absolute())
        self.key = str(key)
        self._metrics = _normalise_metrics(metrics)
        self._space: Any = space if isinstance(space, SearchSpace) else create_space(str(space))

    @property
    def space(self):
        # the space object itself travels to Ray workers (their pickles are Ray's own, never a
        # file a user receives), so a user-defined space needs no module import by name there
        return self._space

    @property
    def table(self) -> _Table:
        return load_table(self.path, self.key)

    @property
    def metric_spec(self) -> Optional[Dict[str, str]]:
        """The metric -> column mapping as given (None: every numeric column)."""
        return self._metrics

    @property
    def column_map(self) -> Dict[str, str]:
        if self._metrics is None:  # every numeric column, under its own name
            return {c: c for c in self.table.numeric}
        return self._metrics

    def key_of(self, arch: Arch) -> str:
        space = self.space
        arch = space.validate(arch)
        table_key = getattr(space, "table_key", None)
        return table_key(arch) if callable(table_key) else canonical_json(arch)

    def row_of(self, arch: Arch, table: Optional[_Table] = None) -> int:
        table = table if table is not None else self.table
        k = self.key_of(arch)
        row = table.row.get(k)
        if row is None:
            raise DataError(f"arch {arch_id(arch)} ({self.key} = {k!r}) is not in table {self.path}; "
                            f"the table has {table.num_rows} rows keyed by column '{self.key}'")
        return row

    def values(self, arch: Arch, columns: Mapping[str, str], table: Optional[_Table] = None) -> Metrics:
        """``arch``'s metrics; ``table``: the table already loaded (a batch loads it once)."""
        table = table if table is not None else self.table
        row = self.row_of(arch, table)
        return {name: float(table.column(col)[row]) for name, col in columns.items()}

    def check(self) -> None:
        """Load the table now and check every metric column exists (fail before a search starts)."""
        table = self.table
        for col in self.column_map.values():
            table.column(col)


class TabularEvaluator(Evaluator):
    """Looks archs up in a benchmark table.

    ``metrics`` maps reported metric names to columns (``{"accuracy": "c10valid_valid_12ep"}``),
    or lists columns reported under their own names; ``None`` reports every numeric column.
    ``fidelities`` optionally lists one such mapping per fidelity (e.g. 12 then 200 epochs), for
    schedulers that stop bad trials early. ``key`` is the column holding the space's
    ``table_key(arch)`` (NB201: ``arch_str``) or, for spaces without one, canonical arch JSON.
    """

    #: a lookup is ~10 us: :func:`raynas.search` gives it the largest batch (raynas.batching)
    cost_per_arch_s = 1e-5

    def __init__(self, path: Union[str, os.PathLike], space: Any = "nb201", key: str = "arch_str",
                 metrics: MetricSpec = None, fidelities: Optional[Sequence[Mapping[str, str]]] = None) -> None:
        self._lookup = _TableLookup(path, space, key, metrics)
        self._fidelities = [dict(f) for f in fidelities] if fidelities else None
        if self._fidelities is not None and not all(self._fidelities):
            raise ConfigError("each fidelity must map at least one metric name to a column")
        # with metrics=None the names are the table's numeric columns, so the table loads here
        self.metrics = tuple(self._lookup.column_map)

    @property
    def path(self) -> str:
        return self._lookup.path

    @property
    def spec(self) -> Dict[str, Any]:
        """How to rebuild this evaluator (its table's path and columns) as JSON, for resuming
        (see :mod:`raynas.evaluators.spec`)."""
        return {"kind": "table", "table": str(Path(self.path).expanduser().resolve()), "key": self._lookup.key,
                "table_metrics": self._lookup.metric_spec, "fidelities": self._fidelities}

    def check(self) -> "TabularEvaluator":
        self._lookup.check()
        for fid in self._fidelities or []:
            for col in fid.values():
                self._lookup.table.column(col)
        return self

    def lookup(self, arch: Arch) -> Metrics:
        return self._lookup.values(arch, self._lookup.column_map)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        # the table (a stat and a path resolution per load) and the columns once per batch
        table, columns = self._lookup.table, self._lookup.column_map
        return [self._lookup.values(a, columns, table) for a in archs]

    @property
    def num_fidelities(self) -> int:
        return len(self._fidelities) if self._fidelities else 1

    def evaluate_fidelities(self, arch: Arch):
        if not self._fidelities:
            yield self.lookup(arch)
            return
        for columns in self._fidelities:
            yield self._lookup.values(arch, columns)

    def __len__(self) -> int:
        return self._lookup.table.num_rows

    def keys(self) -> List[str]:
        """Every key in the table, in row order (e.g. to enumerate all NB201 archs)."""
        table = self._lookup.table
        out = [""] * table.num_rows
        for k, i in table.row.items():
            out[i] = k
        return out


class TabularCost:
    """A table column as a cost metric known before evaluation, for constraints.

    ``TabularCost(path, metrics={"latency_ms": "lat_pixel3"})(arch) -> {"latency_ms": 3.6}``.
    Pickles as path + options, like :class:`TabularEvaluator`.
    """

    def __init__(self, path: Union[str, os.PathLike], metrics: MetricSpec, space: Any = "nb201",
                 key: str = "arch_str") -> None:
        if metrics is None:
            raise ConfigError("TabularCost needs metrics, e.g. {'latency_ms': 'lat_pixel3'}")
        self._lookup = _TableLookup(path, space, key, metrics)
        self.metrics = tuple(self._lookup.column_map)

    def check(self) -> "TabularCost":
        self._lookup.check()
        return self

    def __call__(self, arch: Arch) -> Metrics:
        return self._lookup.values(arch, self._lookup.column_map)

    def bounds(self) -> Dict[str, Tuple[float, float]]:
        """(min, max) of each cost over the whole table (to tell a user a limit is infeasible)."""
        table = self._lookup.table
        out = {}
        for name, col in self._lookup.column_map.items():
            values = table.column(col)
            finite = values[np.isfinite(values)]
            out[name] = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
        return out
