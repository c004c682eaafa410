"""Registry of search spaces, in the manner of timm's ``register_model`` / ``create_model``.

Built-in spaces live in the top-level ``spaces`` package and are imported on first use;
third-party packages can add theirs through the ``raynas.spaces`` entry-point group.
"""
from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from typing import Any, Callable, Dict, List, Mapping, Optional, TypeVar

from raynas.errors import ConfigError, UnknownSpaceError
from raynas.space import SearchSpace

_FACTORIES: Dict[str, Callable[..., SearchSpace]] = {}
_DESCRIPTIONS: Dict[str, str] = {}
_LAZY: Dict[str, str] = {}          # name -> module that registers it when imported
_builtins_loaded = False

T = TypeVar("T")


def register_space(name: str, description: Optional[str] = None) -> Callable[[T], T]:
    """Decorator registering a ``SearchSpace`` subclass or a factory returning one."""
    if not name or not isinstance(name, str):
        raise ConfigError("register_space needs a non-empty name")

    def decorator(factory: T) -> T:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ConfigError(f"search space '{name}' is already registered")
        _FACTORIES[name] = factory  # type: ignore[assignment]
        doc = description or inspect.getdoc(factory) or ""
        _DESCRIPTIONS[name] = doc.strip().splitlines()[0] if doc.strip() else ""
        return factory

    return decorator


def _load_builtins() -> None:
    """Learn the built-in names (without importing their modules) and load entry points."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    builtin = importlib.import_module("spaces")
    for name, module in getattr(builtin, "BUILTIN_SPACES", {}).items():
        if name not in _FACTORIES:
            _LAZY[name] = module
    try:
        entry_points = metadata.entry_points(group="raynas.spaces")
    except TypeError:  # Python < 3.10 API
        entry_points = metadata.entry_points().get("raynas.spaces", [])  # type: ignore[attr-defined]
    for ep in entry_points:
        ep.load()


def _import_lazy(name: str) -> None:
    module = _LAZY.pop(name, None)
    if module is not None and name not in _FACTORIES:
        importlib.import_module(module)


def list_spaces() -> List[str]:
    """Names of every registered search space."""
    _load_builtins()
    return sorted(set(_FACTORIES) | set(_LAZY))


def describe_spaces() -> Dict[str, str]:
    """Name -> one-line description, for ``raynas spaces`` (imports every family)."""
    _load_builtins()
    for name in list(_LAZY):
        _import_lazy(name)
    return {name: _DESCRIPTIONS.get(name, "") for name in sorted(_FACTORIES)}


def create_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate a registered space by name, e.g. ``create_space("ofa_mbv3_cifar")``."""
    if isinstance(name, SearchSpace):
        return name
    _load_builtins()
    _import_lazy(name)
    if name not in _FACTORIES:
        raise UnknownSpaceError(str(name), list_spaces())
    try:
        space = _FACTORIES[name](**options)
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
    _load_builtins()
    _import_lazy(spec["name"])
    if spec["name"] not in _FACTORIES and spec.get("module"):
        raise UnknownSpaceError(
            str(spec["name"]), list_spaces(),
            hint=f"The file names module {_clip(spec['module'], 120)}, which raynas never imports from a "
                 "file: install the package that registers the space (entry-point group "
                 "'raynas.spaces') or import the module yourself, if you trust it, before loading.")
    return create_space(spec["name"], **dict(options))


def _clip(value: Any, limit: int = 200) -> str:
    """``repr`` of a value read from a file, cut short: an error message never echoes a
    whole (possibly huge) input."""
    from raynas.errors import clip

    return clip(value, limit)
