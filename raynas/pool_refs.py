"""Object-store arguments of a pool's evaluator factory, kept out of restartable actors' constructors.

The pool's dispatcher is restartable (``max_restarts=-1``). Ray warns (an ERROR line on every
pool start, ray-project/ray#53727) when such an actor's constructor arguments hold ObjectRefs,
because a restart re-reads them and Ray does not pin them for it. The factory's ObjectRefs (the
checkpoint bytes, the evaluation splits) are therefore held by a small named actor that never
restarts and lives as long as the driver (which owns the objects anyway); the factory the
dispatcher receives names that actor instead, and each pool worker swaps the references back
in when it starts (:func:`resolve_refs`). Nothing changes for evaluation: a worker still reads
the objects from the object store.
"""
from __future__ import annotations

import functools
import uuid
from typing import Any, Callable, List, Optional, Tuple

import ray


class _RefHolder:
    """Holds a list of ObjectRefs (passed nested in a list, so Ray does not resolve them)."""

    def __init__(self, refs: List[Any]) -> None:
        self.refs = list(refs[0])

    def get(self) -> List[Any]:
        return [self.refs]   # nested again: the caller receives the references, not the objects


class HeldRef:
    """Stands for the ``index``-th ObjectRef held by the actor ``holder`` (picklable, no ObjectRef)."""

    def __init__(self, holder: str, namespace: Optional[str], index: int) -> None:
        self.holder, self.namespace, self.index = holder, namespace, int(index)


def hold_refs(factory: Callable[[], Any]) -> Tuple[Callable[[], Any], Optional[Any]]:
    """``(factory without ObjectRefs, holder actor or None)``: a ``functools.partial`` whose
    arguments are ObjectRefs gets :class:`HeldRef` placeholders instead. Any other factory is
    returned unchanged."""
    if not isinstance(factory, functools.partial):
        return factory, None
    refs: List[Any] = []

    def swap(value: Any) -> Any:
        if isinstance(value, ray.ObjectRef):
            refs.append(value)
            return _Placeholder(len(refs) - 1)
        return value

    args = [swap(a) for a in factory.args]
    keywords = {k: swap(v) for k, v in factory.keywords.items()}
    if not refs:
        return factory, None
    name = f"raynas-pool-refs-{uuid.uuid4().hex[:12]}"
    namespace = ray.get_runtime_context().namespace
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # hard affinity, as the dispatcher's: a soft one is only a preference, and a holder placed on
    # a worker node dies with it (max_restarts=0), after which no replacement worker can start
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    holder = ray.remote(_RefHolder).options(name=name, namespace=namespace, num_cpus=0, max_restarts=0,
                                            scheduling_strategy=here).remote([refs])

    def held(value: Any) -> Any:
        return HeldRef(name, namespace, value.index) if isinstance(value, _Placeholder) else value

    return functools.partial(factory.func, *[held(a) for a in args],
                             **{k: held(v) for k, v in keywords.items()}), holder


def resolve_refs(factory: Callable[[], Any]) -> Callable[[], Any]:
    """Inside a pool worker: the factory with its :class:`HeldRef` placeholders replaced by the
    ObjectRefs they stand for."""
    if not isinstance(factory, functools.partial):
        return factory
    values = list(factory.args) + list(factory.keywords.values())
    held = [v for v in values if isinstance(v, HeldRef)]
    if not held:
        return factory
    holder = ray.get_actor(held[0].holder, namespace=held[0].namespace)
    refs = ray.get(holder.get.remote())[0]

    def real(value: Any) -> Any:
        return refs[value.index] if isinstance(value, HeldRef) else value

    return functools.partial(factory.func, *[real(a) for a in factory.args],
                             **{k: real(v) for k, v in factory.keywords.items()})


class _Placeholder:
    def __init__(self, index: int) -> None:
        self.index = index
