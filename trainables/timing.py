"""Seconds per training step of several training configs, timed in alternating rounds.

On a shared machine the load drifts; timing the configs round-robin (a few steps of each, then
again) lets the drift hit every config alike, so the ratios hold even when the absolute times
do not. The demo sizes its stand-alone comparison with this, the benchmarks their budgets.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List, Mapping, Optional

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_steps(configs: Mapping[str, Any], dataset=None, *, steps: int = 2, rounds: int = 3,
                        warmup: int = 1) -> Dict[str, Any]:
    """Median seconds per step of each config (a throwaway trainer each, ``warmup`` steps first).

    Returns ``{"seconds_per_step": {name: median}, "per_round": {name: [seconds, ...]},
    "rounds": rounds, "steps_per_round": steps}``.
    """
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    if steps < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1, rounds >= 1, warmup >= 0; got {steps}, {rounds}, {warmup}")
    trainers = {}
    for name, config in configs.items():
        trainer = SupernetTrainer(SupernetTrainConfig.from_any(config), dataset)
        for _ in range(warmup):  # allocations and first-call overheads stay out of the timing
            trainer.run_step()
            trainer.step += 1
        trainers[name] = trainer
    times: Dict[str, List[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            _sync(trainer.device)
            start = time.perf_counter()
            for _ in range(steps):
                trainer.run_step()
                trainer.step += 1
            _sync(trainer.device)
            times[name].append((time.perf_counter() - start) / steps)
    return {"seconds_per_step": {n: statistics.median(t) for n, t in times.items()},
            "per_round": times, "rounds": rounds, "steps_per_round": steps}


def seconds_per_step(config: Any, dataset=None, steps: int = 8, warmup: int = 3,
                     rounds: Optional[int] = None) -> float:
    """Seconds per step of one config (``rounds`` of ``steps``, default one round)."""
    timing = time_training_steps({"config": config}, dataset, steps=steps, rounds=rounds or 1,
                                 warmup=warmup)
    return timing["seconds_per_step"]["config"]
