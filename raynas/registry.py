"""One registry shape for every plug-in kind, and the registry of search spaces.

:class:`Registry` is timm's ``_registry.py`` in one small class: ``register`` (a decorator or a
call), names a module registers when first imported (``lazy``: creating ``synthetic`` must not
import torch in every Tune trial process), an entry-point group for third-party packages,
``names()``, and ``get(name)`` whose error lists every name. Spaces, search strategies, proxies,
predictors, sampling strategies and temperature schedules each keep one instance; their
``register_*`` / ``list_*`` / ``make_*`` functions are thin front-ends over it.

Built-in spaces live in the top-level ``spaces`` package and are imported on first use;
third-party packages can add theirs through the ``raynas.spaces`` entry-point group. The Tune
trainables (what runs inside trials) live in the top-level ``trainables`` package and are
looked up by name in :data:`TRAINABLES`: with the CLI, this module is the only place under
``raynas/`` that names ``spaces`` or ``trainables`` (the core never imports them).
"""
from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from typing import (Any, Callable, Dict, Generic, Iterable, List, Mapping, Optional, Sequence,
                    TypeVar, Union)

from raynas.errors import ConfigError, UnknownSpaceError, clip
from raynas.space import SearchSpace

T = TypeVar("T")
F = TypeVar("F")


class Registry(Generic[T]):
    """Name -> object (a class or factory) of one kind of plug-in.

    Args:
        kind: what a name stands for, in messages (``"search space"``, ``"proxy"``).
        lazy: name -> module that registers the name when imported (or a callable returning
            that table, read on first use), so listing names imports nothing heavy.
        preload: modules imported on first use (they register names not known ahead).
        entry_point_group: an ``importlib.metadata`` group whose entry points are loaded on
            first use (third-party plug-ins).
        hint: appended to the unknown-name error (how to add one).
        unknown: builds the unknown-name error from (name, known names); a
            :class:`~raynas.errors.ConfigError` by default.
    """

    def __init__(self, kind: str, *, lazy: Union[Mapping[str, str], Callable[[], Mapping[str, str]], None] = None,
                 preload: Sequence[str] = (), entry_point_group: Optional[str] = None,
                 hint: str = "", unknown: Optional[Callable[[str, List[str]], Exception]] = None) -> None:
        self.kind = kind
        self._entries: Dict[str, T] = {}
        self._descriptions: Dict[str, str] = {}
        self._modules: Dict[str, str] = {}
        self._lazy_source = lazy
        self._lazy: Dict[str, str] = {}
        self._preload = tuple(preload)
        self._entry_point_group = entry_point_group
        self._hint = hint
        self._unknown = unknown
        self._loaded = False

    # ------------------------------------------------------------------ adding names
    def register(self, name: str, obj: Optional[T] = None, *, description: Optional[str] = None,
                 replace: bool = False) -> Any:
        """``registry.register("name", obj)``, or ``@registry.register("name")`` as a decorator
        (which returns the decorated object unchanged). Registering another object under a
        taken name is an error unless ``replace``."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"registering a {self.kind} needs a non-empty name, got {name!r}")
        if obj is None:
            def decorator(target: F) -> F:
                self.register(name, target, description=description, replace=replace)  # type: ignore[arg-type]
                return target
            return decorator
        old = self._entries.get(name)
        if old is not None and old is not obj and old != obj and not replace:
            raise ConfigError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = obj
        self._lazy.pop(name, None)
        self._modules[name] = getattr(obj, "__module__", "") or ""
        doc = (description or inspect.getdoc(obj) or "").strip()
        self._descriptions[name] = doc.splitlines()[0] if doc else ""
        return obj

    # ------------------------------------------------------------------ looking names up
    def load(self) -> None:
        """Learn the lazy names and load the preloaded modules and entry points, once."""
        if self._loaded:
            return
        self._loaded = True
        source = self._lazy_source
        table = source() if callable(source) else (source or {})
        self._lazy.update({n: m for n, m in table.items() if n not in self._entries})
        for module in self._preload:
            importlib.import_module(module)
        if self._entry_point_group:
            for ep in metadata.entry_points(group=self._entry_point_group):
                ep.load()

    def _import(self, name: str) -> None:
        module = self._lazy.pop(name, None)
        if module is not None and name not in self._entries:
            importlib.import_module(module)

    def names(self) -> List[str]:
        """Every registered name, sorted (lazy ones included, nothing imported)."""
        self.load()
        return sorted(set(self._entries) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or name in self._lazy

    def is_loaded(self, name: str) -> bool:
        """Whether a module already imported registered ``name`` (imports nothing)."""
        return name in self._entries

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises an error listing them all."""
        self.load()
        if isinstance(name, str):
            self._import(name)
        if not isinstance(name, str) or name not in self._entries:
            raise self.unknown_error(name)
        return self._entries[name]

    def unknown_error(self, name: Any) -> Exception:
        names = self.names()
        if self._unknown is not None:
            return self._unknown(str(name), names)
        message = f"unknown {self.kind} {clip(name, 100)}; available: {', '.join(names) or '(none)'}"
        return ConfigError(message + (f". {self._hint}" if self._hint else ""))

    def create(self, name: str, *args: Any, **options: Any) -> Any:
        """``get(name)(*args, **options)``; a wrong option is a ConfigError naming the plug-in."""
        factory = self.get(name)
        try:
            return factory(*args, **options)  # type: ignore[operator]
        except TypeError as exc:
            raise ConfigError(f"bad options for {self.kind} '{name}': {exc}") from exc

    def module_of(self, name: str) -> str:
        """The module that registered ``name`` ("" before it is imported)."""
        return self._modules.get(name, "")

    def describe(self) -> Dict[str, str]:
        """Name -> one-line description (imports every lazy module)."""
        self.load()
        for name in list(self._lazy):
            self._import(name)
        return {name: self._descriptions.get(name, "") for name in sorted(self._entries)}

    def items(self) -> Iterable[tuple]:
        """(name, object) pairs of every name (imports every lazy module)."""
        self.describe()
        return sorted(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} loaded, {len(self._lazy)} lazy)"


# -------------------------------------------------------------------------------- search spaces
def _builtin_spaces() -> Mapping[str, str]:
    return getattr(importlib.import_module("spaces"), "BUILTIN_SPACES", {})


SPACES: Registry[Callable[..., SearchSpace]] = Registry(
    "search space", lazy=_builtin_spaces, entry_point_group="raynas.spaces",
    unknown=UnknownSpaceError)


def register_space(name: str, description: Optional[str] = None) -> Callable[[T], T]:
    """Decorator registering a ``SearchSpace`` subclass or a factory returning one."""
    if not name or not isinstance(name, str):
        raise ConfigError("register_space needs a non-empty name")
    return SPACES.register(name, description=description)


def list_spaces() -> List[str]:
    """Names of every registered search space."""
    return SPACES.names()


def describe_spaces() -> Dict[str, str]:
    """Name -> one-line description, for ``raynas spaces`` (imports every family)."""
    return SPACES.describe()


def create_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate a registered space by name, e.g. ``create_space("ofa_mbv3_cifar")``."""
    if isinstance(name, SearchSpace):
        return name
    factory = SPACES.get(name)
    try:
        space = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for space '{name}': {exc}") from exc
    space.name = name
    return space


def space_from_spec(spec: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.spec` (as stored in checkpoints and exports).

    The name is resolved through the registry only (built-ins, spaces registered by modules this
    process imported, installed ``raynas.spaces`` entry points): a file never chooses which code
    runs. Old files may still carry a ``module`` field; it is never imported.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"a space spec is a dict with 'name' and 'options', got {_clip(spec)}")
    options = spec.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"the options of space '{_clip(spec['name'])}' must be a dict, got {_clip(options)}")
    if spec["name"] not in SPACES and spec.get("module"):
        raise UnknownSpaceError(
            str(spec["name"]), list_spaces(),
            hint=f"The file names module {_clip(spec['module'], 120)}, which raynas never imports from a "
                 "file: install the package that registers the space (entry-point group "
                 "'raynas.spaces') or import the module yourself, if you trust it, before loading.")
    return create_space(spec["name"], **dict(options))


# -------------------------------------------------------------------------------- trainables
#: name -> the function a Tune trial runs (each module registers its own on import)
TRAINABLES: Registry[Callable[..., None]] = Registry(
    "trainable", lazy={"evaluate": "trainables.evaluate", "darts_search": "trainables.darts",
                       "darts_retrain": "trainables.darts"})


def _clip(value: Any, limit: int = 200) -> str:
    """``repr`` of a value read from a file, cut short: an error message never echoes a
    whole (possibly huge) input."""
    return clip(value, limit)
