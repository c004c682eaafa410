"""The ``Evaluator`` interface: ``evaluate(archs) -> list[dict]`` on batches of archs.

Metrics are plain floats keyed by name. Conventions used across raynas: ``accuracy`` is top-1
in percent (0-100); ``params`` is a parameter count; ``macs`` multiply-accumulates and
``flops`` floating-point operations (2 per MAC, as torch's FlopCounterMode counts);
``latency_ms`` milliseconds.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from raynas.arch import Arch

Metrics = Dict[str, float]


class Evaluator(ABC):
    """Scores archs in batches.

    Instances are shipped to Tune trials, so they must pickle cheaply: hold Ray actor handles,
    object refs or file paths, never a model.
    """

    #: names of the metrics ``evaluate`` reports (used to check objectives before a search)
    metrics: Tuple[str, ...] = ()
    #: archs per Tune trial when the user gives no ``batch_size``; None: sized from the
    #: evaluator's cost so a trial amortises Tune's per-trial overhead (see :mod:`raynas.batching`)
    preferred_batch_size: Optional[int] = None
    #: seconds one evaluation costs, when known without running one (a table lookup: ~0); None:
    #: :func:`raynas.search` times a few evaluations before Tune starts (see :mod:`raynas.batching`)
    cost_per_arch_s: Optional[float] = None
    preferred_concurrency: int = 1
    trial_resources: Dict[str, float] = {"cpu": 1.0}
    #: how to rebuild this evaluator from files, as JSON (read by :mod:`raynas.evaluators.spec`),
    #: recorded in ``search.json`` so a resume needs no evaluator; None when it cannot be
    spec: Optional[Dict[str, Any]] = None

    @abstractmethod
    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        """One metrics dict per arch, in order."""

    def evaluate_fidelities(self, arch: Arch) -> Iterator[Metrics]:
        """Metrics at increasing fidelity (e.g. per fine-tuning epoch), for schedulers like ASHA.

        The default has a single fidelity.
        """
        yield self.evaluate([arch])[0]

    @property
    def num_fidelities(self) -> int:
        return 1

    def close(self) -> None:
        """Release what the evaluator holds (actors, files)."""


class FunctionEvaluator(Evaluator):
    """Wraps ``fn(arch) -> dict | float`` (a float becomes the metric named ``metric``)."""

    def __init__(self, fn: Callable[[Arch], Union[Mapping[str, Any], float]], metric: str = "score",
                 metrics: Sequence[str] = ()) -> None:
        self.fn = fn
        self.metric = metric
        self.metrics = tuple(metrics) or (metric,)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        out: List[Metrics] = []
        for arch in archs:
            value = self.fn(arch)
            if isinstance(value, Mapping):
                out.append({k: float(v) for k, v in value.items()})
            else:
                out.append({self.metric: float(value)})
        return out


def as_evaluator(evaluator: Any) -> Evaluator:
    """Accept an Evaluator, anything with ``.evaluator()`` (a pool), or ``fn(arch) -> dict``."""
    from raynas.errors import ConfigError

    if isinstance(evaluator, Evaluator):
        return evaluator
    if hasattr(evaluator, "evaluator") and callable(evaluator.evaluator):
        return evaluator.evaluator()
    if callable(evaluator):
        return FunctionEvaluator(evaluator)
    raise ConfigError(f"cannot evaluate with {type(evaluator).__name__}: pass a raynas Evaluator, "
                      "a SupernetPool or a function arch -> dict of metrics")
