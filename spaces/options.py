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


def resolve_num_classes(space_default: int, num_classes: Any) -> int:
    """The class count of a model: ``num_classes`` if given (e.g. the dataset's), else the
    space option. ``cost`` takes the same override so counts stay exact."""
    if num_classes is None:
        return int(space_default)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)
