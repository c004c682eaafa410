"""raynas: neural architecture search on Ray Tune.

Declare or pick an elastic search space, train one weight-sharing supernet, and search it with
RL, evolutionary and Optuna strategies, scoring candidates on a pool of Ray actors.
"""
from raynas.arch import Arch, arch_id, canonical, canonical_json
from raynas.errors import (ArchError, CheckpointError, ConfigError, DataError,
                           EvaluationError, InfeasibleConstraintError, RaynasError,
                           UnknownSpaceError)
from raynas.evaluators import Evaluator, FunctionEvaluator, TabularCost, TabularEvaluator
from raynas.registry import create_space, describe_spaces, list_spaces, register_space, space_from_spec
from raynas.rng import derive_rng
from raynas.space import Decision, SearchSpace
from raynas.supernet import Supernet

__version__ = "0.1.0"

__all__ = [
    "Arch", "arch_id", "canonical", "canonical_json",
    "ArchError", "CheckpointError", "ConfigError", "DataError", "EvaluationError",
    "InfeasibleConstraintError", "RaynasError", "UnknownSpaceError",
    "Evaluator", "FunctionEvaluator", "TabularCost", "TabularEvaluator",
    "create_space", "describe_spaces", "list_spaces", "register_space", "space_from_spec",
    "derive_rng", "Decision", "SearchSpace", "Supernet",
]
