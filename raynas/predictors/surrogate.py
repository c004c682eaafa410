"""The surrogate evaluator: a fitted predictor behind the :class:`Evaluator` interface, so every
strategy (through :func:`raynas.search` or :func:`raynas.searchers.inline.run_inline`) searches
on predicted accuracy in microseconds per arch instead of real evaluations.

It reports the predicted metric under the predictor's metric name (so objectives such as
``"accuracy"`` work unchanged), plus the space's analytic cost and any extra cost functions
(e.g. a latency lookup table) so multi-objective strategies see them too. It pickles as the
predictor's arrays (numpy) and the space, which is what Tune ships to each trial.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from raynas.arch import Arch
from raynas.constraints import CostFn
from raynas.evaluators.base import Evaluator, Metrics
from raynas.predictors.base import PathLike, Predictor, load_predictor


class SurrogateEvaluator(Evaluator):
    """Predicted ``predictor.metric`` (plus cost metrics) for each arch.

    Args:
        predictor: a fitted :class:`Predictor`.
        cost_functions: extra ``arch -> metrics`` functions reported beside the prediction.
        include_cost: also report ``space.cost(arch)`` (params, MACs, FLOPs).
        metric: report the prediction under this name (default: the predictor's metric).
    """

    # predictions are vectorised: big batches, one trial at a time
    preferred_batch_size = 64
    preferred_concurrency = 1

    def __init__(self, predictor: Predictor, cost_functions: Sequence[CostFn] = (), *,
                 include_cost: bool = True, metric: Optional[str] = None) -> None:
        if not predictor.is_fitted:
            from raynas.errors import ConfigError
            raise ConfigError("the surrogate evaluator needs a fitted predictor; call fit() first")
        self.predictor = predictor
        self.cost_functions = list(cost_functions)
        self.include_cost = bool(include_cost)
        self.metric = str(metric or predictor.metric)
        names = [self.metric]
        if self.include_cost:
            names += list(predictor.space.cost(predictor.space.smallest()))
        for fn in self.cost_functions:
            names += list(getattr(fn, "metrics", ()))
        self.metrics = tuple(dict.fromkeys(names))

    @classmethod
    def load(cls, path: PathLike, space=None, **options) -> "SurrogateEvaluator":
        """The surrogate of a saved predictor (its encoding checked against ``space``)."""
        return cls(load_predictor(path, space), **options)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        space = self.predictor.space
        archs = [space.validate(a) for a in archs]
        predicted = self.predictor.predict(archs)
        out: List[Metrics] = []
        for arch, value in zip(archs, predicted):
            row: Dict[str, float] = {}
            if self.include_cost:
                row.update({k: float(v) for k, v in space.cost(arch).items()})
            for fn in self.cost_functions:
                row.update({k: float(v) for k, v in fn(arch).items()})
            row[self.metric] = float(value)
            out.append(row)
        return out
