"""Tune schedulers for multi-fidelity evaluations (e.g. fine-tuning epochs, or a table's 12- then
200-epoch columns): ASHA stops poor archs at a low fidelity, HyperBand runs brackets of
successive halving.

With a scheduler, :func:`raynas.search` puts one arch in each Tune trial and the trial reports
once per fidelity (``training_iteration`` = fidelity level), so ``max_t`` is the evaluator's
number of fidelities.
"""
from __future__ import annotations

from typing import Any

from raynas.errors import ConfigError

SCHEDULERS = ("asha", "hyperband")


def make_scheduler(name: str, num_fidelities: int, *, grace_period: int = 1, reduction_factor: float = 2,
                   **options: Any):
    """``"asha"`` (asynchronous successive halving) or ``"hyperband"`` over ``num_fidelities``."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    if num_fidelities < 2:
        raise ConfigError(f"scheduler '{name}' stops trials between fidelities, but the evaluator reports "
                          f"{num_fidelities}; use a multi-fidelity evaluator (e.g. FineTuneEvaluator, or "
                          "TabularEvaluator(fidelities=[...])) or no scheduler")
    key = name.lower()
    if key == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=int(num_fidelities),
                             grace_period=int(grace_period), reduction_factor=reduction_factor, **options)
    if key == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=int(num_fidelities),
                                  reduction_factor=reduction_factor, **options)
    raise ConfigError(f"unknown scheduler '{name}'; choose one of {', '.join(SCHEDULERS)} or pass a Tune scheduler")


def resolve_scheduler(scheduler: Any, num_fidelities: int):
    """A scheduler given by name becomes a Tune scheduler; anything else passes through."""
    if isinstance(scheduler, str):
        return make_scheduler(scheduler, num_fidelities)
    return scheduler


def check_scheduler(scheduler: Any, max_concurrent: int, num_samples: int) -> None:
    """Synchronous HyperBand pauses trials until their whole bracket reaches a milestone; paused
    trials still count against the searcher's concurrency, so brackets only fill when every trial
    can be in flight at once."""
    if scheduler is None:
        return
    from ray.tune.schedulers import HyperBandScheduler

    if isinstance(scheduler, HyperBandScheduler) and max_concurrent < num_samples:
        raise ConfigError(f"HyperBand pauses trials until their bracket fills, which needs every trial in "
                          f"flight at once: max_concurrent={max_concurrent} < num_samples={num_samples}. "
                          "Pass max_concurrent=num_samples, or use scheduler='asha' (no pausing)")
