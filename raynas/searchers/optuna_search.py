"""Optuna samplers (TPE, NSGA-II, CMA-ES, GP, ...) through Ray Tune's ``OptunaSearch``.

Tune's ``OptunaSearch`` proposes values for the space's flat decisions; this wrapper turns them
into archs, lets the raynas base enforce constraints and skip duplicates (telling Optuna the
known result of a duplicate, and a failure for an infeasible proposal), and feeds evaluated
metrics back. Several objectives make a multi-objective study (NSGA-II by default).
"""
from __future__ import annotations

import base64
import io
import pickle
from typing import Any, Dict, List, Mapping, Optional, Tuple

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError
from raynas.searchers.base import ArchSearcher

SAMPLERS = ("tpe", "nsga2", "cmaes", "gp", "random", "qmc")


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
        # CMA-ES needs numeric parameters; categorical decisions fall back to its independent sampler
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

    def __init__(self, sampler: str = "tpe", sampler_options: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if sampler.lower() not in SAMPLERS:
            raise ConfigError(f"unknown Optuna sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}")
        self.sampler_name = sampler.lower()
        self.sampler_options = dict(sampler_options or {})
        self.inner = None
        self._counter = 0
        self._pending: Dict[str, str] = {}          # arch_id -> inner trial id awaiting its result
        self._last_inner: Optional[Tuple[str, Arch]] = None
        self._known: Dict[str, List[float]] = {}    # arch_id -> objective values already observed

    def on_setup(self) -> None:
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch

        multi = len(self.objectives) > 1
        sampler = make_optuna_sampler(self.sampler_name, self.seed, multi, self.sampler_options)
        space = {d.name: tune.choice(list(d.choices)) for d in self.space.decisions()}
        metric = [o.metric for o in self.objectives] if multi else self.objectives[0].metric
        mode = [o.mode for o in self.objectives] if multi else self.objectives[0].mode
        self.inner = OptunaSearch(space=space, metric=metric, mode=mode, sampler=sampler, seed=self.seed)

    def propose(self) -> Arch:
        self._counter += 1
        inner_id = f"raynas_{self._counter}"
        values = self.inner.suggest(inner_id)
        arch = self.space.from_decisions(values)
        self._last_inner = (inner_id, arch)
        self._pending[arch_id(arch)] = inner_id
        return arch

    def on_rejected(self, arch: Arch, reason: str) -> None:
        key = arch_id(arch)
        inner_id = self._pending.pop(key, None)
        if inner_id is None:
            return
        known = self._known.get(key)
        if reason == "duplicate" and known is not None:
            self._tell(inner_id, known)
        else:
            # infeasible, or a duplicate still being evaluated: Optuna ignores failed trials
            self.inner.on_trial_complete(inner_id, result=None, error=True)

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        key = arch_id(arch)
        inner_id = self._pending.pop(key, None)
        values = None
        if metrics is not None and all(o.metric in metrics for o in self.objectives):
            values = [float(metrics[o.metric]) for o in self.objectives]
            self._known[key] = values
        if inner_id is None:
            return
        if values is None:
            self.inner.on_trial_complete(inner_id, result=None, error=True)
        else:
            self._tell(inner_id, values)

    def _tell(self, inner_id: str, values: List[float]) -> None:
        result = {o.metric: v for o, v in zip(self.objectives, values)}
        self.inner.on_trial_complete(inner_id, result=result)

    def observe_external(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        """An arch evaluated for this search that Optuna did not propose (adopted when a killed
        search resumes): it joins the study as a finished trial, so the sampler learns from it."""
        import optuna

        if metrics is None or not all(o.metric in metrics for o in self.objectives):
            return  # Optuna ignores failed trials
        values = [float(metrics[o.metric]) for o in self.objectives]
        self._known[arch_id(arch)] = values
        decisions = self.space._filled(self.space.to_decisions(arch), None)
        if getattr(self, "encoding", "categorical") == "ordinal":
            decisions = {d.name: d.index(decisions[d.name]) for d in self.space.decisions()}
        distributions = self.inner._space
        params = {name: decisions[name] for name in distributions}
        trial = optuna.trial.create_trial(params=params, distributions=distributions,
                                          **({"values": values} if len(values) > 1 else {"value": values[0]}))
        self.inner._ot_study.add_trial(trial)

    # The Optuna study and sampler state are Optuna objects: they are kept with Tune's own
    # OptunaSearch.save (a pickle, as Tune stores all searcher state). Restore experiment
    # directories you trust only.
    def get_strategy_state(self) -> Dict[str, Any]:
        buf = io.BytesIO()
        pickle.dump(self.inner.__dict__.copy(), buf)
        return {"counter": self._counter, "pending": self._pending, "known": self._known,
                "optuna": base64.b64encode(buf.getvalue()).decode("ascii")}

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        self._counter = int(state["counter"])
        self._pending = dict(state["pending"])
        self._known = {k: list(v) for k, v in state["known"].items()}
        self.inner.__dict__.update(pickle.loads(base64.b64decode(state["optuna"])))
