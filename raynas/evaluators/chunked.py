"""Evaluate a long list of archs in chunks with a progress bar, on an evaluator or a pool.

On a :class:`raynas.SupernetPool` (or its ``PoolEvaluator``) every chunk is submitted at once
and the bar advances as chunks finish on whichever actor is free; on an in-process evaluator
the chunks run one after another.
"""
from __future__ import annotations

import sys
from typing import Any, List, Sequence

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.evaluators.base import Metrics


def evaluate_in_chunks(target: Any, archs: Sequence[Arch], *, chunk_size: int = 8,
                       progress: bool = False, desc: str = "evaluate") -> List[Metrics]:
    """``target.evaluate(archs)`` in chunks of ``chunk_size``, results in the order of ``archs``."""
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    archs = list(archs)
    chunks = [archs[i:i + chunk_size] for i in range(0, len(archs), chunk_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(archs), desc=desc, unit="arch", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5)
    try:
        dispatcher = getattr(target, "dispatcher", None)
        if dispatcher is not None:
            return _on_pool(dispatcher, chunks, bar)
        out: List[Metrics] = []
        for chunk in chunks:
            out.extend(target.evaluate(chunk))
            if bar is not None:
                bar.update(len(chunk))
        return out
    finally:
        if bar is not None:
            bar.close()


def _on_pool(dispatcher: Any, chunks: List[List[Arch]], bar: Any) -> List[Metrics]:
    import ray

    refs = [dispatcher.evaluate.remote(chunk) for chunk in chunks]
    position = {ref: i for i, ref in enumerate(refs)}
    results: List[Any] = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = position[ref]
            results[i] = ray.get(ref)
            if bar is not None:
                bar.update(len(chunks[i]))
    return [row for chunk_rows in results for row in chunk_rows]


__all__ = ["evaluate_in_chunks"]
