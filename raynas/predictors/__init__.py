"""Accuracy predictors (OFA's MLP, boosted trees) fitted on results tables, the surrogate
evaluator that searches on them, and the predict-then-verify loop.

Importing this package stays light (numpy): torch loads only to fit the MLP and scikit-learn only
to fit boosted trees; prediction is numpy for both, so querying a fitted predictor needs neither.
"""
from raynas.predictors.base import (PREDICTOR_KINDS, PREDICTORS, Predictor, TargetTransform,
                                    list_predictors, load_predictor, make_predictor, predictor_class,
                                    register_predictor)
from raynas.predictors.data import PredictorData, encode_archs, from_pairs, load_training_data
from raynas.predictors.metrics import ranking_metrics

__all__ = ["PREDICTOR_KINDS", "PREDICTORS", "Predictor", "PredictorData", "TargetTransform",
           "encode_archs", "from_pairs", "list_predictors", "load_predictor", "load_training_data",
           "make_predictor", "predictor_class", "ranking_metrics", "register_predictor"]
