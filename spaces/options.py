"""Checks shared by the space constructors."""
from __future__ import annotations

from typing import Any, List

from raynas.errors import ConfigError


def sorted_choices(values: Any, kind: type, option: str) -> List[Any]:
    """A non-empty list of positive choices, deduplicated and sorted (smallest cost first)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"space option '{option}' must be a non-empty list, got {values!r}")
    try:
        out = sorted({kind(v) for v in values})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"space option '{option}' must hold {kind.__name__} values, "
                          f"got {values!r}") from exc
    if not out:
        raise ConfigError(f"space option '{option}' must be a non-empty list, got {values!r}")
    if any(v <= 0 for v in out):
        raise ConfigError(f"space option '{option}' must hold positive values, got {values!r}")
    return out
