"""Latency lookup tables in Once-for-All's YAML format, and the cost function that reads them.

A table maps an operator key (e.g. ``expanded_conv-input:56x56x24-output:28x28x40-expand:72-
kernel:5-stride:2-idskip:0-se:1-hs:0``) to ``{count, mean, std}`` in milliseconds; a network's
latency is the sum of the means of its operators, keyed by ``space.layer_descriptors(arch)``.
OFA keeps one file per input resolution (``<res>_lookup_table.yaml``); :class:`LatencyLUT`
reads a single file or such a folder.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from raynas.arch import Arch
from raynas.errors import ConfigError, DataError
from raynas.io import atomic_write_text

PathLike = Union[str, os.PathLike]
TABLE_PATTERN = "{resolution}_lookup_table.yaml"


@dataclass(frozen=True)
class Entry:
    """Measured latency of one operator: ``count`` runs, their ``mean`` and ``std`` in ms."""

    mean: float
    std: float = 0.0
    count: int = 1


class LatencyTable:
    """Operator key -> :class:`Entry`; ``latency(keys)`` is the sum of the entries' means."""

    def __init__(self, entries: Mapping[str, Entry], source: str = "<memory>") -> None:
        self.entries: Dict[str, Entry] = dict(entries)
        self.source = source

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def missing(self, keys: Iterable[str]) -> List[str]:
        return [k for k in keys if k not in self.entries]

    def latency(self, keys: Sequence[str]) -> float:
        """Sum of the mean latencies of ``keys`` (an operator used twice counts twice)."""
        missing = self.missing(keys)
        if missing:
            raise DataError(f"latency table {self.source} has no entry for {len(missing)} of the "
                            f"{len(keys)} operators, e.g. '{missing[0]}'. The table was made for "
                            "another space or resolution; build one for this space with "
                            "raynas.hardware.build_latency_tables")
        return float(sum(self.entries[k].mean for k in keys))

    # ------------------------------------------------------------------ YAML
    @classmethod
    def load(cls, path: PathLike) -> "LatencyTable":
        import yaml

        p = Path(path)
        if not p.is_file():
            raise DataError(f"latency table not found: {p}")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            raw = yaml.load(p.read_text(encoding="utf-8"), Loader=loader)
        except yaml.YAMLError as exc:
            raise DataError(f"latency table {p} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict) or not raw:
            raise DataError(f"latency table {p} must map operator keys to {{count, mean, std}}")
        entries = {}
        for key, value in raw.items():
            if not isinstance(value, dict) or "mean" not in value:
                raise DataError(f"latency table {p}: entry '{key}' has no 'mean' (got {value!r})")
            mean = float(value["mean"])
            if not math.isfinite(mean) or mean < 0:
                raise DataError(f"latency table {p}: entry '{key}' has mean {mean}, not a latency")
            entries[str(key)] = Entry(mean, float(value.get("std", 0.0)), int(value.get("count", 1)))
        return cls(entries, str(p))

    def to_yaml(self) -> str:
        import yaml

        data = {k: {"count": e.count, "mean": e.mean, "std": e.std} for k, e in sorted(self.entries.items())}
        return yaml.safe_dump(data, default_flow_style=False, sort_keys=True)

    def save(self, path: PathLike) -> Path:
        atomic_write_text(path, self.to_yaml())
        return Path(path)


_CACHE: Dict[Tuple[str, int, int], LatencyTable] = {}
_CACHE_LOCK = threading.Lock()


def load_table_cached(path: PathLike) -> LatencyTable:
    """A table loaded once per process (reloaded when the file changes)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataError(f"latency table not found: {p}") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        table = _CACHE.get(key)
        if table is None:
            table = _CACHE[key] = LatencyTable.load(p)
    return table


class LatencyLUT:
    """Latency from lookup tables, as a cost metric known before evaluation.

    ``path`` is one table file, or a folder of per-resolution tables named like OFA's
    (``<res>_lookup_table.yaml``; the resolution is ``space.input_resolution(arch)``). The space
    must name its operators with ``layer_descriptors(arch)``. Use it as
    ``raynas.search(..., cost_functions=[LatencyLUT(dir, space)], constraints="latency_ms<=25")``.
    Pickles as paths and the space's spec; each process loads a table once.
    """

    def __init__(self, path: PathLike, space: Any, metric: str = "latency_ms",
                 pattern: str = TABLE_PATTERN) -> None:
        from raynas.space import SearchSpace

        if not isinstance(space, SearchSpace):
            raise ConfigError(f"LatencyLUT needs the SearchSpace whose operators the table times, got "
                              f"{type(space).__name__}")
        if not callable(getattr(space, "layer_descriptors", None)):
            raise ConfigError(f"space '{space.name}' does not name its operators (no layer_descriptors"
                              "(arch)); a lookup table cannot price its archs. Use a table column "
                              "(TabularCost) or measured latency instead")
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"latency table path not found: {self.path}")
        self.space = space
        self.metric = str(metric)
        self.pattern = pattern
        self.metrics = (self.metric,)

    def table_path(self, resolution: Optional[int]) -> Path:
        if self.path.is_file():
            return self.path
        if resolution is None:
            raise ConfigError(f"{self.path} is a folder of per-resolution tables, but space "
                              f"'{self.space.name}' has no input resolution; pass one table file")
        path = self.path / self.pattern.format(resolution=resolution)
        if not path.is_file():
            have = sorted(p.name for p in self.path.glob(self.pattern.format(resolution="*")))
            raise DataError(f"no latency table for resolution {resolution} in {self.path} (has: "
                            f"{', '.join(have) or 'none'}). Constrain the space to those resolutions "
                            "or build the missing table")
        return path

    def table_for(self, arch: Arch) -> LatencyTable:
        return load_table_cached(self.table_path(self.space.input_resolution(arch)))

    def latency(self, arch: Arch) -> float:
        return self.table_for(arch).latency(self.space.layer_descriptors(arch))

    def __call__(self, arch: Arch) -> Dict[str, float]:
        return {self.metric: self.latency(arch)}

    def breakdown(self, arch: Arch) -> List[Tuple[str, float]]:
        """(operator key, mean ms) per layer of ``arch``, in network order."""
        table = self.table_for(arch)
        keys = self.space.layer_descriptors(arch)
        table.latency(keys)  # raises naming a missing key
        return [(k, table.entries[k].mean) for k in keys]
