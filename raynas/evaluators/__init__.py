"""Evaluators score archs: weight-inherited accuracy on a supernet pool, tabular lookups,
zero-cost proxies, analytic cost, or any function."""
from raynas.evaluators.base import Evaluator, FunctionEvaluator, Metrics
from raynas.evaluators.tabular import TabularCost, TabularEvaluator

__all__ = ["Evaluator", "FunctionEvaluator", "Metrics", "TabularCost", "TabularEvaluator"]
