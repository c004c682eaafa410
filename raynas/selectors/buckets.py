"""Resource buckets: PreNAS's constraint ladder C = (a, a + ε, a + 2ε, ..., b) (Eq. 10).

Bucket ``i`` holds the archs with ``edges[i] <= cost < edges[i + 1]``, as the reference code's
``param_to_index`` does; archs outside ``[a, b)`` belong to no bucket.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from raynas.errors import ConfigError

_NUMBER = re.compile(r"^\s*([-+0-9.eE_]+)\s*([kKmMgG]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_amount(text: Union[str, float, int]) -> float:
    """``"5M"`` -> 5e6, ``"500k"`` -> 5e5, ``"1.5e6"`` -> 1.5e6."""
    if isinstance(text, (int, float)):
        return float(text)
    m = _NUMBER.match(str(text))
    if not m:
        raise ConfigError(f"cannot read {text!r} as an amount: write e.g. 5M, 500k or 5e6")
    try:
        return float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as an amount: write e.g. 5M, 500k or 5e6") from None


def format_amount(value: float) -> str:
    """5e6 -> ``"5M"``, 5.5e6 -> ``"5.5M"``, 250000 -> ``"250k"``."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class ResourceBuckets:
    """Consecutive half-open intervals of a cost metric (``params`` by default)."""

    edges: Tuple[float, ...]
    metric: str = "params"

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        if len(edges) < 2:
            raise ConfigError(f"buckets need at least two edges, got {list(edges)}")
        if any(not math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"bucket edges must be finite and strictly increasing, got {list(edges)}")
        object.__setattr__(self, "edges", edges)

    @classmethod
    def parse(cls, text: str, metric: str = "params") -> "ResourceBuckets":
        """``"5M:11M:1M"`` (start:stop:step, the margin ε = step) or edges ``"5M,6M,8M,11M"``."""
        text = str(text).strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ConfigError(f"buckets {text!r}: write start:stop:step, e.g. 5M:11M:1M")
            start, stop, step = (parse_amount(p) for p in parts)
            return cls.regular(start, stop, step, metric)
        return cls(tuple(parse_amount(p) for p in text.split(",") if p.strip()), metric)

    @classmethod
    def regular(cls, start: float, stop: float, step: float, metric: str = "params") -> "ResourceBuckets":
        """Buckets of width ``step`` from ``start``; the last one ends at or above ``stop``."""
        if step <= 0 or stop <= start:
            raise ConfigError(f"buckets need start < stop and step > 0, got {start}:{stop}:{step}")
        count = max(1, math.ceil((stop - start) / step - 1e-9))
        return cls(tuple(start + i * step for i in range(count + 1)), metric)

    @classmethod
    def covering(cls, low: float, high: float, step: float, metric: str = "params") -> "ResourceBuckets":
        """Width-``step`` buckets on multiples of ``step`` covering ``[low, high]``."""
        start = math.floor(low / step) * step
        stop = (math.floor(high / step) + 1) * step
        return cls.regular(start, stop, step, metric)

    def __len__(self) -> int:
        return len(self.edges) - 1

    def index(self, value: float) -> Optional[int]:
        """The bucket of ``value``, or None outside every bucket."""
        if not self.edges[0] <= value < self.edges[-1]:
            return None
        return bisect.bisect_right(self.edges, value) - 1

    def bounds(self, index: int) -> Tuple[float, float]:
        return self.edges[index], self.edges[index + 1]

    def label(self, index: int) -> str:
        low, high = self.bounds(index)
        return f"[{format_amount(low)}, {format_amount(high)})"

    def to_dict(self) -> dict:
        return {"metric": self.metric, "edges": list(self.edges)}


__all__ = ["ResourceBuckets", "format_amount", "parse_amount"]
