"""The option checks every space family shares (one checker, one set of messages)."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

from raynas.errors import ConfigError, clip

#: how a choice list's values are read: whole numbers, any positive numbers as floats, or
#: numbers kept as ints when whole (OFA's expand ratios 3, 4, 6 next to 2.5)
KINDS = ("int", "float", "number")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_list(option: str, values: Any, *, odd: bool = False, length: Optional[int] = None,
             allowed: Optional[Sequence[int]] = None) -> Tuple[int, ...]:
    """A non-empty list of positive integers, in the given order (``odd``: odd ones only;
    ``length``: exactly that many; ``allowed``: only these values), e.g. per-stage strides."""
    if isinstance(values, (bool, str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"space option '{option}' must be a non-empty list of integers, got {clip(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (odd and v % 2 == 0) or (
                allowed is not None and v not in allowed):
            what = f"one of {list(allowed)}" if allowed is not None else (
                "odd positive integers" if odd else "positive integers")
            raise ConfigError(f"space option '{option}' must contain {what}, got {clip(values)}")
    if length is not None and len(values) != length:
        raise ConfigError(f"space option '{option}' needs exactly {length} entries, got {clip(values)}")
    return tuple(int(v) for v in values)


def choices(option: str, values: Any, kind: str = "int", *, odd: bool = False,
            allowed: Optional[Sequence[int]] = None) -> Tuple[Any, ...]:
    """The choices of one decision: a non-empty list of distinct positive numbers of ``kind``
    (see :data:`KINDS`), returned sorted (smallest cost first, as decisions need). A repeated
    value is an error, never silently dropped: it would mean the user meant another one."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "int":
        out: Tuple[Any, ...] = int_list(option, values, odd=odd, allowed=allowed)
    else:
        if isinstance(values, (bool, str, bytes)) or not isinstance(values, (list, tuple)) or not values \
                or any(not _is_number(v) or not v > 0 for v in values):
            raise ConfigError(f"space option '{option}' must be a non-empty list of positive numbers, "
                              f"got {clip(values)}")
        out = tuple(float(v) if kind == "float" or not float(v).is_integer() else int(v) for v in values)
    if len(set(out)) != len(out):
        raise ConfigError(f"space option '{option}' has duplicate entries: {clip(values)}")
    return tuple(sorted(out))


def resolve_num_classes(space_default: int, num_classes: Any) -> int:
    """The class count of a model: ``num_classes`` if given (e.g. the dataset's), else the
    space option. ``cost`` takes the same override so counts stay exact."""
    if num_classes is None:
        return int(space_default)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)
