"""Training data for accuracy predictors: (arch, value) pairs from any results table.

Sources: a :class:`raynas.results.SearchResult`, an experiment folder or its ``results.parquet``
(archs as canonical JSON in column ``arch``), or a benchmark table (CSV/Parquet) whose ``key``
column the space parses with ``space.arch_from_key`` (NB201: ``arch_str``). Failed and
non-finite rows are dropped; duplicate archs keep their first value.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from raynas.arch import Arch, arch_from_json, arch_id
from raynas.errors import ConfigError, DataError

Source = Union[str, os.PathLike, Any]  # path, SearchResult or pandas DataFrame


@dataclass
class PredictorData:
    """Archs, their encodings ``X`` (rows of ``space.encode``) and target values ``y``."""

    archs: List[Arch]
    X: np.ndarray
    y: np.ndarray
    metric: str

    def __len__(self) -> int:
        return len(self.archs)

    def subset(self, index: Sequence[int]) -> "PredictorData":
        idx = np.asarray(index, dtype=np.int64)
        return PredictorData([self.archs[i] for i in idx], self.X[idx], self.y[idx], self.metric)

    def split(self, num_train: int, rng: np.random.Generator) -> "tuple[PredictorData, PredictorData]":
        """A random ``num_train`` archs to fit on, the rest held out."""
        if not 1 <= num_train < len(self):
            raise ConfigError(f"cannot hold out archs: num_train={num_train} but the data hold "
                              f"{len(self)} archs")
        order = rng.permutation(len(self))
        return self.subset(order[:num_train]), self.subset(order[num_train:])


def encode_archs(space, archs: Sequence[Arch]) -> np.ndarray:
    """Stack ``space.encode`` of each arch into a float32 matrix."""
    if not archs:
        return np.zeros((0, space.encoding_size), dtype=np.float32)
    return np.stack([space.encode(a) for a in archs]).astype(np.float32, copy=False)


def from_pairs(space, archs: Sequence[Arch], values: Sequence[float], metric: str = "accuracy") -> PredictorData:
    """Data from archs and their values (validated, deduplicated, non-finite values dropped)."""
    if len(archs) != len(values):
        raise DataError(f"{len(archs)} archs but {len(values)} values")
    kept, ys, seen = [], [], set()
    for arch, value in zip(archs, values):
        v = float(value)
        if not np.isfinite(v):
            continue
        arch = space.validate(arch)
        key = arch_id(arch)
        if key in seen:
            continue
        seen.add(key)
        kept.append(arch)
        ys.append(v)
    return PredictorData(kept, encode_archs(space, kept), np.asarray(ys, dtype=np.float64), metric)


def load_training_data(space, source: Source, metric: str = "accuracy", *, key: Optional[str] = None,
                       column: Optional[str] = None) -> PredictorData:
    """(arch, value) pairs of ``source`` for ``space``.

    ``metric`` names the target (the column read unless ``column`` is given, e.g.
    ``metric="accuracy", column="c10valid_valid_12ep"``). ``key``: the column of table keys the
    space parses (``space.arch_from_key``); default: ``arch`` (canonical JSON) when present.
    """
    frame = _frame(source)
    column = column or metric
    if column not in frame.columns:
        raise DataError(f"the results table has no column '{column}'; its columns are: "
                        f"{', '.join(map(str, frame.columns))}. Pass column=<name of the target>")
    if "error" in frame.columns:
        frame = frame[frame["error"].isna() | (frame["error"] == "")]
    if key is None and "arch" in frame.columns:
        archs = [arch_from_json(s) for s in frame["arch"]]
    else:
        key = key or "arch_str"
        parse = getattr(space, "arch_from_key", None)
        if key not in frame.columns:
            raise DataError(f"the table has neither an 'arch' column (canonical arch JSON) nor the "
                            f"key column '{key}'; pass key=<column of arch keys>")
        if not callable(parse):
            raise ConfigError(f"space '{space.name}' cannot parse table keys (no arch_from_key); "
                              "use a table with an 'arch' column of canonical arch JSON")
        archs = [parse(str(k)) for k in frame[key]]
    values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    data = from_pairs(space, archs, values, metric)
    if len(data) == 0:
        raise DataError(f"no usable rows: column '{column}' has no finite value in a successful row")
    return data


def _frame(source: Source):
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source
    if hasattr(source, "df") and isinstance(getattr(source, "df"), pd.DataFrame):  # SearchResult
        return source.df
    path = Path(source)
    if path.is_dir():
        path = path / "results.parquet"
    if not path.is_file():
        raise DataError(f"results table not found: {path}. Pass an experiment folder, its "
                        "results.parquet, or a CSV/Parquet table")
    try:
        return pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for damaged files
        raise DataError(f"cannot read results table {path}: {exc}") from exc
