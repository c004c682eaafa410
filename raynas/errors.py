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
        msg = f"invalid arch{where}: field '{field}' has value {clip(value)}"
        if allowed is not None:
            msg += f"; allowed: {_fmt_allowed(allowed)}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class UnknownSpaceError(RaynasError, ValueError):
    """A search space name is not registered."""

    def __init__(self, name: str, available: Iterable[str], hint: str | None = None) -> None:
        self.name = name
        names = ", ".join(sorted(available)) or "(none registered)"
        super().__init__(
            f"unknown search space {clip(name, 100)}. Available spaces: {names}. "
            + (hint or "Register your own with @raynas.register_space('name') (or, in a package, "
                       "the 'raynas.spaces' entry-point group)."))


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


class SearchFailedError(RaynasError, RuntimeError):
    """A search ran but is not what was asked for: every arch (or too many) failed, or fewer
    archs were evaluated than asked. The CLI exits 1 on it (2 is for bad input)."""

    exit_code = 1


class SearchInterrupted(KeyboardInterrupt):
    """A search stopped by SIGINT (Ctrl+C). Its folder is consistent and says ``interrupted``;
    the message tells how to continue it. A ``KeyboardInterrupt``, so callers that stop on
    Ctrl+C still do; the CLI exits 130."""

    exit_code = 130

    def __init__(self, message: str, directory: Any = None) -> None:
        super().__init__(message)
        self.directory = directory


#: most characters of a value echoed in an error message (a value may come from a huge file)
ECHO_LIMIT = 300


def clip(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters (and says how long it was): error messages
    echo what the user gave without ever echoing a 100 MB file."""
    return shorten(repr(value), limit)


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _fmt_allowed(allowed: Any) -> str:
    if isinstance(allowed, (list, tuple, set, frozenset)):
        return "{" + ", ".join(repr(a) for a in allowed) + "}"
    return str(allowed)
