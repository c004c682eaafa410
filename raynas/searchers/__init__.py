"""Search strategies, each a Ray Tune ``Searcher`` (see :class:`ArchSearcher`)."""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Union

from raynas.errors import ConfigError, RaynasError
from raynas.registry import Registry
from raynas.searchers.base import ArchSearcher

DEDUP_MODES = ("equivalence", "arch")
from raynas.searchers.evolution import RegularizedEvolution
from raynas.searchers.grid import GridSearcher
from raynas.searchers.local_search import LocalSearch
from raynas.searchers.mo_evolution import MultiObjectiveEvolution
from raynas.searchers.optuna_search import SAMPLERS as OPTUNA_SAMPLERS
from raynas.searchers.optuna_search import OptunaArchSearcher
from raynas.searchers.random_search import RandomSearcher
from raynas.searchers.reinforce import ReinforceSearcher

STRATEGIES: Registry[Callable[..., ArchSearcher]] = Registry("strategy")
STRATEGIES.register("random", RandomSearcher)
STRATEGIES.register("evolution", RegularizedEvolution)
STRATEGIES.register("mo_evolution", MultiObjectiveEvolution)
STRATEGIES.register("reinforce", ReinforceSearcher)
STRATEGIES.register("local_search", LocalSearch)
STRATEGIES.register("grid", GridSearcher)
STRATEGIES.register("optuna", OptunaArchSearcher)


def register_strategy(name: str, factory: Callable[..., ArchSearcher]) -> None:
    """Make a strategy available by name to :func:`raynas.search` and the CLI (a name registered
    again is replaced, so a user can swap a built-in strategy for their own)."""
    STRATEGIES.register(name, factory, replace=True)


def list_strategies() -> List[str]:
    return STRATEGIES.names() + ["optuna:" + s for s in OPTUNA_SAMPLERS]


def make_searcher(strategy: Union[str, ArchSearcher], options: Optional[Mapping[str, Any]] = None) -> ArchSearcher:
    """``"evolution"``, ``"optuna:nsga2"``, ... or an ``ArchSearcher`` instance."""
    if isinstance(strategy, ArchSearcher):
        if options:
            raise ConfigError("strategy options go to the strategy's constructor when you pass an instance")
        return strategy
    if not isinstance(strategy, str):
        raise ConfigError(f"strategy must be a name or an ArchSearcher, got {type(strategy).__name__}")
    name, _, variant = strategy.partition(":")
    options = dict(options or {})
    if name == "optuna" and variant:
        options.setdefault("sampler", variant)
    elif variant:
        raise ConfigError(f"strategy '{strategy}': only 'optuna:<sampler>' takes a variant")
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{strategy}'; available: {', '.join(list_strategies())}")
    dedup = options.pop("dedup", ArchSearcher.dedup)   # an option of every strategy
    if dedup not in DEDUP_MODES:
        raise ConfigError(f"strategy option dedup must be one of {DEDUP_MODES}, got {dedup!r}")
    try:
        searcher = STRATEGIES.get(name)(**options)
    except RaynasError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:  # e.g. a string where a number belongs
        raise ConfigError(f"bad options for strategy '{name}': {type(exc).__name__}: {exc}") from exc
    searcher.dedup = dedup
    return searcher


__all__ = ["ArchSearcher", "RandomSearcher", "RegularizedEvolution", "MultiObjectiveEvolution",
           "ReinforceSearcher", "LocalSearch", "GridSearcher", "OptunaArchSearcher",
           "STRATEGIES", "make_searcher", "register_strategy", "list_strategies"]
