"""``SearchConfig``: what a search is -- space, strategy and its options, budget, objectives,
constraints, seed, batching -- checked once, turned into a set-up searcher, and stored in
``search.json`` as plain JSON (from which a resume rebuilds the very same searcher).

:func:`raynas.search` (through Tune), :func:`raynas.resume_search` and the in-process driver
(:func:`raynas.searchers.inline.run_inline`) all build their searcher from one of these, so
the three cannot disagree on how a configuration is read, checked or recorded.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from raynas.constraints import Constraint, CostFn, CostModel, check_constraints_feasible, parse_constraints
from raynas.errors import ConfigError
from raynas.objectives import Objective, parse_objectives
from raynas.space import SearchSpace

#: keys of ``search.json`` that :meth:`SearchConfig.from_json` needs
REQUIRED_KEYS = ("space", "strategy", "num_samples", "seed", "objectives", "batch_size", "max_concurrent")


@dataclass(frozen=True)
class SearchConfig:
    """A checked search configuration (build it with :meth:`create`).

    ``strategy`` is a registered name (``"evolution"``, ``"optuna:tpe"``) or an
    :class:`~raynas.searchers.ArchSearcher` instance; ``batch_size`` (archs per trial) and
    ``max_concurrent`` (trials in flight) stay None until the runner resolves them from the
    evaluator's preferences (:meth:`with_batching`).
    """

    space: SearchSpace
    objectives: List[Objective]
    constraints: List[Constraint] = field(default_factory=list)
    strategy: Any = "evolution"
    strategy_options: Optional[Dict[str, Any]] = None
    num_samples: int = 100
    seed: int = 0
    batch_size: Optional[int] = None
    max_concurrent: Optional[int] = None
    cost_functions: Sequence[CostFn] = ()
    cost_model: Optional[CostModel] = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def create(cls, space: Union[str, SearchSpace], strategy: Any = "evolution", num_samples: Any = 100,
               constraints: Any = None, objectives: Any = None, *,
               strategy_options: Optional[Mapping[str, Any]] = None, batch_size: Optional[int] = None,
               max_concurrent: Optional[int] = None, seed: int = 0, cost_functions: Sequence[CostFn] = (),
               metrics: Optional[Sequence[str]] = None, check_feasible: bool = True) -> "SearchConfig":
        """Check everything about a search that can be checked without Ray or an evaluator
        running: the space, objectives, constraints and their feasibility, the budget, the
        batching, the strategy and its options, and -- given ``metrics``, the names the
        evaluator reports -- that every objective is a metric the search will see."""
        from raynas.registry import create_space
        from raynas.searchers import ArchSearcher, make_searcher

        space = create_space(space) if isinstance(space, str) else space
        if not isinstance(space, SearchSpace):
            raise ConfigError(f"space must be a registered name or a SearchSpace, got {type(space).__name__}")
        objectives = parse_objectives(objectives)
        constraints = parse_constraints(constraints)
        cost_model = CostModel(space, cost_functions)
        budget = positive_int("num_samples", num_samples)
        batch_size = positive_int("batch_size", batch_size, optional=True)
        max_concurrent = positive_int("max_concurrent", max_concurrent, optional=True)
        if metrics:
            known = set(metrics) | set(cost_model.metric_names())
            unknown = [str(o) for o in objectives if o.metric not in known]
            if unknown:
                raise ConfigError(f"objective {', '.join(unknown)} is not a metric this search reports; it reports "
                                  f"{', '.join(sorted(known))}")
        if check_feasible:
            check_constraints_feasible(space, cost_model, constraints, np.random.default_rng(seed))
        if not isinstance(strategy, ArchSearcher):   # an instance is set up when the search starts
            make_searcher(strategy, strategy_options).setup(space, objectives, constraints=constraints,
                                                            cost_model=cost_model, budget=budget, seed=seed)
        return cls(space=space, objectives=objectives, constraints=constraints, strategy=strategy,
                   strategy_options=dict(strategy_options) if strategy_options else None, num_samples=budget,
                   seed=int(seed), batch_size=batch_size, max_concurrent=max_concurrent,
                   cost_functions=tuple(cost_functions), cost_model=cost_model)

    def __post_init__(self) -> None:
        if self.cost_model is None:
            object.__setattr__(self, "cost_model", CostModel(self.space, self.cost_functions))

    def with_batching(self, batch_size: int, max_concurrent: int) -> "SearchConfig":
        """This configuration with the batching the runner resolved."""
        return dataclasses.replace(self, batch_size=int(batch_size), max_concurrent=int(max_concurrent),
                                   cost_model=self.cost_model)

    # ------------------------------------------------------------------ the searcher
    @property
    def strategy_name(self) -> str:
        """The strategy's registered name (``optuna`` for ``optuna:tpe``)."""
        if isinstance(self.strategy, str):
            from raynas.searchers import make_searcher

            return make_searcher(self.strategy, self.strategy_options).strategy_name
        return self.strategy.strategy_name

    def make_searcher(self):
        """The strategy, set up for this search (batching resolved: see :meth:`with_batching`)."""
        from raynas.searchers import make_searcher

        if self.batch_size is None or self.max_concurrent is None:
            raise ConfigError("resolve batch_size and max_concurrent (with_batching) before making the searcher")
        searcher = make_searcher(self.strategy, None if not isinstance(self.strategy, str) else self.strategy_options)
        return searcher.setup(self.space, self.objectives, constraints=self.constraints, cost_model=self.cost_model,
                              budget=self.num_samples, batch_size=self.batch_size,
                              max_concurrent=self.max_concurrent, seed=self.seed)

    # ------------------------------------------------------------------ search.json
    def to_json(self) -> Dict[str, Any]:
        """The configuration as ``search.json`` records it (plain JSON)."""
        return {"space": self.space.spec(), "strategy": self.strategy if isinstance(self.strategy, str)
                else self.strategy.strategy_name, "strategy_name": self.strategy_name,
                "strategy_options": _recorded_options(self.strategy, self.strategy_options),
                "num_samples": int(self.num_samples), "seed": int(self.seed),
                "objectives": [str(o) for o in self.objectives], "constraints": [str(c) for c in self.constraints],
                "batch_size": self.batch_size, "max_concurrent": self.max_concurrent,
                "cost_functions": len(self.cost_functions)}

    @classmethod
    def from_json(cls, meta: Mapping[str, Any], *, strategy: Any = None, cost_functions: Sequence[CostFn] = (),
                  where: Any = "this search") -> "SearchConfig":
        """Rebuild the configuration recorded in ``search.json``. A search started with a
        strategy object (or options that are not plain JSON) needs an identically configured
        ``strategy`` again; one started with cost functions needs the same ``cost_functions``."""
        from raynas.errors import CheckpointError
        from raynas.registry import space_from_spec
        from raynas.searchers import make_searcher

        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise CheckpointError(f"{where} lacks {', '.join(missing)}: it was not written by raynas.search (or "
                                  "by an older raynas), so the search cannot be resumed")
        if int(meta.get("cost_functions") or 0) != len(cost_functions):
            raise ConfigError(f"the search in {where} ran with {meta.get('cost_functions')} cost function(s); pass "
                              "the same ones again (cost_functions=...)")
        if strategy is None:
            if meta.get("strategy_options") is None:
                raise ConfigError(f"the search in {where} was started with a strategy object (or options that are "
                                  "not plain JSON): pass an identically configured one again (strategy=...)")
            strategy, options = meta["strategy"], dict(meta["strategy_options"])
        else:
            searcher = make_searcher(strategy)
            expected = meta.get("strategy_name") or meta.get("strategy")
            if searcher.strategy_name != expected:
                raise ConfigError(f"the search in {where} ran strategy '{expected}', not '{searcher.strategy_name}'")
            options = None
        space = space_from_spec(meta["space"])
        return cls(space=space, objectives=parse_objectives(meta["objectives"]),
                   constraints=parse_constraints(meta.get("constraints") or None), strategy=strategy,
                   strategy_options=options, num_samples=int(meta["num_samples"]), seed=int(meta["seed"]),
                   batch_size=int(meta["batch_size"]), max_concurrent=int(meta["max_concurrent"]),
                   cost_functions=tuple(cost_functions))


def _recorded_options(strategy: Any, options: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The strategy options as search.json keeps them (None when they cannot be: a strategy
    object, or options that are not plain JSON; a resume then needs the strategy again)."""
    if not isinstance(strategy, str):
        return None
    try:
        return json.loads(json.dumps(dict(options or {}), allow_nan=False))
    except (TypeError, ValueError):
        return None


def positive_int(name: str, value: Any, optional: bool = False) -> Optional[int]:
    """``value`` as a positive int (None allowed when ``optional``), else one clear error."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ConfigError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")
    return int(value)
