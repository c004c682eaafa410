"""Zero-cost proxies on a :class:`raynas.SupernetPool`: many archs scored in parallel, one
:class:`ProxyEvaluator` per actor (per GPU, or a few CPU actors).

    pool = SupernetPool(factory=proxy_factory("nb201", ["synflow", "naswot"], batch=(x, y)))
    rows = pool.evaluate(archs)       # cached by arch_id, chunks spread over the actors

Scores equal the in-process ones exactly: every arch's untrained weights are drawn from a seed
derived from the evaluator's seed and the arch id, never from the order or the actor.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Tuple, Union

from raynas.evaluators.base import Evaluator
from raynas.proxies.evaluator import DEFAULT_PROXIES, ProxyEvaluator
from raynas.proxies.registry import ProxyBatch


def _hosted(evaluator: ProxyEvaluator) -> ProxyEvaluator:
    """Runs inside a pool worker: the evaluator arrives pickled by Ray (space, options, batch)
    and resolves its device there."""
    return evaluator


def proxy_factory(space: Any, proxies: Sequence[str] = DEFAULT_PROXIES,
                  batch: Optional[Union[ProxyBatch, Tuple[Any, Any]]] = None, *, data_free: bool = False,
                  device: Optional[str] = None, **options: Any) -> Callable[[], Evaluator]:
    """A picklable ``() -> ProxyEvaluator`` for ``SupernetPool(factory=...)``.

    Give the fixed minibatch ``batch=(inputs, targets)`` or ``data_free=True`` (PreNAS's
    synthetic batch and sum-of-logits objective). ``device=None`` means each actor's own: CUDA
    where the actor was given a GPU, else CPU. Other options go to :class:`ProxyEvaluator`
    (``seed``, ``batch_size``, ``input_shape``, ``num_classes``, ``proxy_options`` ...).
    Bad names or options fail here, in the caller, not later in every actor.
    """
    evaluator = ProxyEvaluator(space, proxies, batch=batch, data_free=data_free,
                               device="auto" if device is None else device, **options)
    return functools.partial(_hosted, evaluator)


__all__ = ["proxy_factory"]
