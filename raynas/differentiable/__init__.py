"""Differentiable architecture search: DARTS (first and second order) and temperature-decay
DARTS (TD-DARTS) over supernets of mixed operations.

Modules: ``temperature`` (schedules of the softmax temperature), ``mixed`` (mixed ops and the
supernet base), ``architect`` (the α step), ``search`` (one search in this process),
``retraining`` (train a derived arch from scratch), ``sweep`` (many of either on Ray Tune),
``config`` (their options), ``latency`` (the expected-latency loss: its table and checks). Names load on first use: ``import raynas.differentiable`` stays
free of torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DartsSearchConfig": "raynas.differentiable.config",
    "RetrainConfig": "raynas.differentiable.config",
    "TemperatureSchedule": "raynas.differentiable.temperature",
    "make_schedule": "raynas.differentiable.temperature",
    "list_schedules": "raynas.differentiable.temperature",
    "register_schedule": "raynas.differentiable.temperature",
    "MixedOp": "raynas.differentiable.mixed",
    "DifferentiableSupernet": "raynas.differentiable.mixed",
    "Architect": "raynas.differentiable.architect",
    "DartsSearch": "raynas.differentiable.search",
    "run_search": "raynas.differentiable.search",
    "Retrainer": "raynas.differentiable.retraining",
    "run_retrain": "raynas.differentiable.retraining",
    "darts_search": "raynas.differentiable.sweep",
    "retrain": "raynas.differentiable.sweep",
    "SweepResult": "raynas.differentiable.sweep",
    "build_supernet_latency_table": "raynas.differentiable.latency",
    "resolve_latency_table": "raynas.differentiable.latency",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raynas.differentiable' has no attribute '{name}'")


__all__ = sorted(_LAZY)
