"""raynas: neural architecture search on Ray Tune.

Declare or pick an elastic search space, train one weight-sharing supernet, and search it with
RL, evolutionary and Optuna strategies, scoring candidates on a pool of Ray actors.

Importing ``raynas`` stays light (numpy only): every Tune trial process imports it, and Ray,
pandas and torch load on first use of what needs them.
"""
from __future__ import annotations

import importlib
from typing import Any

from raynas.arch import Arch, arch_id, canonical, canonical_json
from raynas.constraints import Constraint
from raynas.errors import (ArchError, CheckpointError, ConfigError, DataError,
                           EvaluationError, InfeasibleConstraintError, RaynasError,
                           UnknownSpaceError)
from raynas.evaluators import Evaluator, FunctionEvaluator, TabularCost, TabularEvaluator
from raynas.objectives import Objective
from raynas.registry import create_space, describe_spaces, list_spaces, register_space, space_from_spec
from raynas.rng import derive_rng
from raynas.space import Decision, SearchSpace

__version__ = "0.1.0"

# name -> module that defines it; imported when first asked for
_LAZY = {
    "search": "raynas.tuner",
    "resume_search": "raynas.tuner",
    "search_trainable": "raynas.tune_view",
    "SearchResult": "raynas.results",
    "SupernetPool": "raynas.pool",
    "ensure_ray": "raynas.runtime",
    "Supernet": "raynas.supernet",
    "darts_search": "raynas.differentiable.sweep",
    "DartsSearchConfig": "raynas.differentiable.config",
    "make_schedule": "raynas.differentiable.temperature",
    "LatencyLUT": "raynas.hardware.lut",
    "MeasuredLatencyEvaluator": "raynas.hardware.measured",
    "FineTuneEvaluator": "raynas.evaluators.finetune",
    "SurrogateEvaluator": "raynas.predictors.surrogate",
    "predict_then_verify": "raynas.predictors.guided",
    "make_predictor": "raynas.predictors.base",
    "load_predictor": "raynas.predictors.base",
    "select_candidates": "raynas.selectors.prenas",
    "PreNASSelector": "raynas.selectors.prenas",
    "proxy_factory": "raynas.proxies.pooled",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raynas' has no attribute '{name}'")


__all__ = [
    "Arch", "arch_id", "canonical", "canonical_json", "Constraint", "Objective",
    "ArchError", "CheckpointError", "ConfigError", "DataError", "EvaluationError",
    "InfeasibleConstraintError", "RaynasError", "UnknownSpaceError",
    "Evaluator", "FunctionEvaluator", "TabularCost", "TabularEvaluator",
    "create_space", "describe_spaces", "list_spaces", "register_space", "space_from_spec",
    "derive_rng", "Decision", "SearchSpace", *_LAZY,
]
