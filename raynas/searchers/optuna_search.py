"""Optuna samplers (TPE, NSGA-II, CMA-ES, GP, ...) through Ray Tune's ``OptunaSearch``.

Tune's ``OptunaSearch`` proposes values for the space's flat decisions; this wrapper turns them
into archs, lets the raynas base enforce constraints and skip duplicates (telling Optuna the
known result of a duplicate, and a failure for an infeasible proposal), and feeds evaluated
metrics back. Several objectives make a multi-objective study (NSGA-II by default).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError
from raynas.searchers.base import ArchSearcher
from raynas.searchers.optuna_history import OptunaHistory

SAMPLERS = ("tpe", "nsga2", "cmaes", "gp", "random", "qmc")
ENCODINGS = ("categorical", "ordinal")


def make_optuna_sampler(name: str, seed: int, multi_objective: bool, options: Optional[Mapping[str, Any]] = None):
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    options = dict(options or {})
    name = name.lower()
    if name == "tpe":
        # multivariate TPE models interactions between decisions (better on cell spaces)
        options.setdefault("multivariate", True)
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    if name == "cmaes":
        if multi_objective:
            raise ConfigError("CMA-ES is single-objective; use 'optuna:nsga2' or 'optuna:tpe' for several objectives")
        try:
            import cmaes  # noqa: F401 - Optuna imports it lazily, on the first relative sample
        except ImportError:
            raise ConfigError("Optuna's CMA-ES sampler needs the 'cmaes' package: pip install cmaes") from None
        # CMA-ES samples numbers only; the wrapper gives it each decision as an ordinal index
        return optuna.samplers.CmaEsSampler(seed=seed, **options)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, **options)
    raise ConfigError(f"unknown Optuna sampler '{name}'; choose one of {', '.join(SAMPLERS)}")


class OptunaArchSearcher(ArchSearcher):
    """Any Optuna sampler over ``space.decisions()``, driven through Tune's ``OptunaSearch``."""

    strategy_name = "optuna"
    multi_objective = True

    def __init__(self, sampler: str = "tpe", sampler_options: Optional[Mapping[str, Any]] = None,
                 encoding: Optional[str] = None) -> None:
        super().__init__()
        if sampler.lower() not in SAMPLERS:
            raise ConfigError(f"unknown Optuna sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}")
        self.sampler_name = sampler.lower()
        self.sampler_options = dict(sampler_options or {})
        # CMA-ES samples numbers only (it hands categorical parameters to a random sampler), so it
        # sees each decision as the index of its choice: choices run from smallest to largest cost,
        # which makes the index an ordinal the search distribution can move along.
        self.encoding = encoding or ("ordinal" if self.sampler_name == "cmaes" else "categorical")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.inner = None
        self.history = OptunaHistory()              # every call made to ``inner``, for save/restore
        self._counter = 0
        self._pending: Dict[str, str] = {}          # dedup key -> inner trial id awaiting its result
        self._last_inner: Optional[Tuple[str, Arch]] = None
        self._known: Dict[str, List[float]] = {}    # dedup key -> objective values already observed

    def on_setup(self) -> None:
        self.inner = self._new_inner()
        self.history = OptunaHistory()

    def _new_inner(self):
        """A fresh ``OptunaSearch`` with a fresh sampler seeded with the search's seed."""
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch

        multi = len(self.objectives) > 1
        sampler = make_optuna_sampler(self.sampler_name, self.seed, multi, self.sampler_options)
        if self.encoding == "ordinal":
            space = {d.name: tune.randint(0, len(d.choices)) for d in self.space.decisions()}
        else:
            space = {d.name: tune.choice(list(d.choices)) for d in self.space.decisions()}
        metric = [o.metric for o in self.objectives] if multi else self.objectives[0].metric
        mode = [o.mode for o in self.objectives] if multi else self.objectives[0].mode
        # Tune warns that a space given here bypasses its automatic conversion and that the
        # sampler's seed wins: both are what this wrapper intends
        quiet = logging.getLogger(OptunaSearch.__module__)
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            return OptunaSearch(space=space, metric=metric, mode=mode, sampler=sampler)
        finally:
            quiet.setLevel(level)

    def propose(self) -> Arch:
        self._counter += 1
        inner_id = f"raynas_{self._counter}"
        values = self.history.ask(self.inner, inner_id)
        if self.encoding == "ordinal":
            values = {d.name: d.choices[int(values[d.name])] for d in self.space.decisions()}
        arch = self.space.from_decisions(values)
        key = self.dedup_key(arch)
        self._last_inner = (inner_id, arch)
        # an equivalent arch already in flight keeps its own Optuna trial
        self._pending.setdefault(key, inner_id)
        return arch

    def on_rejected(self, arch: Arch, reason: str) -> None:
        # the base rejects the proposal it was just given, i.e. the last one
        if self._last_inner is None or arch_id(self._last_inner[1]) != arch_id(arch):
            return  # not one of Optuna's proposals (the base's random fallback)
        inner_id = self._last_inner[0]
        self._last_inner = None
        key = self.dedup_key(arch)
        if self._pending.get(key) == inner_id:
            del self._pending[key]
        known = self._known.get(key)
        if reason == "duplicate" and known is not None:
            self._tell(inner_id, known)
        elif reason == "infeasible" and self._known:
            # A failed trial teaches a sampler nothing, so it would keep proposing the same
            # infeasible region; the worst value seen so far pushes it away.
            self._tell(inner_id, self._worst_known())
        else:
            # a duplicate still being evaluated, or nothing known yet: Optuna ignores failures
            self.history.tell(self.inner, inner_id, None)

    def _worst_known(self) -> List[float]:
        values = list(self._known.values())
        return [min(v[i] for v in values) if o.mode == "max" else max(v[i] for v in values)
                for i, o in enumerate(self.objectives)]

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        key = self.dedup_key(arch)
        inner_id = self._pending.pop(key, None)
        values = None
        if metrics is not None and all(o.metric in metrics for o in self.objectives):
            values = [float(metrics[o.metric]) for o in self.objectives]
            self._known[key] = values
        if inner_id is None:
            return
        self._tell(inner_id, values)

    def _tell(self, inner_id: str, values: Optional[List[float]]) -> None:
        self.history.tell(self.inner, inner_id, values)

    def observe_external(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        """An arch evaluated for this search that Optuna did not propose (adopted when a killed
        search resumes): it joins the study as a finished trial, so the sampler learns from it."""
        if metrics is None or not all(o.metric in metrics for o in self.objectives):
            return  # Optuna ignores failed trials
        values = [float(metrics[o.metric]) for o in self.objectives]
        # keyed like every other entry, so a later proposal equivalent to it is answered from it
        self._known[self.dedup_key(arch)] = values
        decisions = self.space._filled(self.space.to_decisions(arch), None)
        if self.encoding == "ordinal":
            decisions = {d.name: d.index(decisions[d.name]) for d in self.space.decisions()}
        params = {name: decisions[name] for name in self.inner._space}
        self.history.add(self.inner, params, values)

    # The sampler's state is saved as the history of calls it received (plain JSON) and
    # restored by replaying them into a fresh sampler with the same seed: see optuna_history.
    def get_strategy_state(self) -> Dict[str, Any]:
        return {"counter": self._counter, "pending": dict(self._pending),
                "known": {k: list(v) for k, v in self._known.items()},
                "history": self.history.to_json(self.inner)}

    def __getstate__(self) -> Dict[str, Any]:
        # Tune pickles the searcher with the Tuner (tuner.pkl); some samplers hold locks and
        # others objects that must not travel, so the study travels as its history instead
        state = dict(self.__dict__)
        if state.get("inner") is not None:
            state["inner"], state["history"] = self.history.to_json(self.inner), None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self.inner, dict):
            history = OptunaHistory()
            self.inner = history.replay(self.inner, self._new_inner)
            self.history = history

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        history = OptunaHistory()
        self.inner = history.replay(state["history"], self._new_inner)
        self.history = history
        self._counter = int(state["counter"])
        self._pending = {str(k): str(v) for k, v in state["pending"].items()}
        self._known = {str(k): [float(x) for x in v] for k, v in state["known"].items()}
        self._last_inner = None
