"""Errors raised by raynas. Each names the problem and how to fix it."""
from __future__ import annotations

from typing import Any, Iterable


class RaynasError(Exception):
    """Base class of every error raynas raises on purpose."""


class ArchError(RaynasError, ValueError):
    """An architecture is malformed or outside its search space.

    The message names the field, the bad value and the allowed values.
    """

    def __init__(self, field: str, value: Any, allowed: Any = None, *, space: str | None = None,
                 hint: str | None = None) -> None:
        self.field, self.value, self.allowed, self.space = field, value, allowed, space
        where = f" in space '{space}'" if space else ""
        msg = f"invalid arch{where}: field '{field}' has value {value!r}"
        if allowed is not None:
            msg += f"; allowed: {_fmt_allowed(allowed)}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class UnknownSpaceError(RaynasError, ValueError):
    """A search space name is not registered."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        names = ", ".join(sorted(available)) or "(none registered)"
        super().__init__(
            f"unknown search space '{name}'. Available spaces: {names}. "
            "Register your own with @raynas.register_space('name').")


class DataError(RaynasError, ValueError):
    """A dataset spec or path is missing, unknown or malformed."""


class CheckpointError(RaynasError, ValueError):
    """A checkpoint is missing, empty, truncated, corrupt or for another space."""


class ConfigError(RaynasError, ValueError):
    """A search / training configuration value is invalid."""


class InfeasibleConstraintError(RaynasError, ValueError):
    """No architecture of the space satisfies the given constraints."""


class EvaluationError(RaynasError, RuntimeError):
    """An evaluation failed permanently (after its retries)."""


class SearchInterruptedError(RaynasError, RuntimeError):
    """A search stopped before its budget was spent (Ctrl+C, or a stop signal Tune caught); what
    it evaluated is kept and the search can be resumed."""


def _fmt_allowed(allowed: Any) -> str:
    if isinstance(allowed, (list, tuple, set, frozenset)):
        return "{" + ", ".join(repr(a) for a in allowed) + "}"
    return str(allowed)
