"""Evaluators score archs: weight-inherited accuracy on a supernet pool, tabular lookups,
zero-cost proxies, analytic cost, or any function."""
from raynas.evaluators.base import Evaluator, FunctionEvaluator, Metrics

__all__ = ["Evaluator", "FunctionEvaluator", "Metrics"]
