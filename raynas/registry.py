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
_MODULES: Dict[str, str] = {}
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
        _MODULES[name] = getattr(factory, "__module__", "") or ""
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
    # recorded in the spec so another process (a Ray worker) can import a user-defined space
    space.module = _MODULES.get(name, "")
    return space


def space_from_spec(spec: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.spec` (as stored in checkpoints and exports)."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"a space spec is a dict with 'name' and 'options', got {spec!r}")
    _load_builtins()
    module = spec.get("module")
    if spec["name"] not in _FACTORIES and module and module != "__main__":
        try:
            importlib.import_module(module)  # registers the space as a side effect
        except ImportError as exc:
            raise ConfigError(f"space '{spec['name']}' is defined in module '{module}', which cannot be "
                              f"imported here ({exc}); make it importable on every node") from exc
    return create_space(spec["name"], **dict(spec.get("options") or {}))
