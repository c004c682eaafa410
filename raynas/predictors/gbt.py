"""Gradient-boosted regression trees, the non-neural baseline predictor.

Fitting uses scikit-learn's ``GradientBoostingRegressor`` (squared error). Its trees are then
exported to plain arrays (children, split feature, threshold, leaf value per node, read from the
public ``tree_`` attributes) and prediction re-implements the ensemble in numpy: nothing is
pickled, and a loaded predictor predicts exactly what the fitted one did.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from raynas.errors import CheckpointError, ConfigError
from raynas.predictors.base import Predictor, register_predictor

_NODE_ARRAYS = ("left", "right", "feature", "threshold", "value")


@register_predictor("gbt")
class GBTPredictor(Predictor):
    """Boosted trees: ``init + learning_rate * sum(tree(x))`` over ``n_estimators`` trees."""

    kind = "gbt"

    def __init__(self, space, metric: str = "accuracy", seed: int = 0, target: str = "standard", *,
                 n_estimators: int = 300,
                 learning_rate: float = 0.05, max_depth: int = 4, min_samples_leaf: int = 2,
                 subsample: float = 0.8) -> None:
        super().__init__(space, metric, seed, target)
        if n_estimators < 1 or max_depth < 1 or min_samples_leaf < 1:
            raise ConfigError("gbt needs n_estimators, max_depth and min_samples_leaf >= 1")
        if not (0 < learning_rate and 0 < subsample <= 1):
            raise ConfigError(f"gbt needs learning_rate > 0 and 0 < subsample <= 1 (got {learning_rate}, {subsample})")
        self.n_estimators, self.learning_rate = int(n_estimators), float(learning_rate)
        self.max_depth, self.min_samples_leaf, self.subsample = int(max_depth), int(min_samples_leaf), float(subsample)
        self.init_value = 0.0
        self.nodes: Dict[str, np.ndarray] = {}
        self.roots = np.zeros(0, dtype=np.int64)  # offset of each tree's root in the node arrays
        self.depth = 0

    def hyperparameters(self) -> Dict[str, Any]:
        return {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate,
                "max_depth": self.max_depth, "min_samples_leaf": self.min_samples_leaf,
                "subsample": self.subsample}

    def _fit(self, X: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> None:
        from sklearn.ensemble import GradientBoostingRegressor

        model = GradientBoostingRegressor(
            loss="squared_error", n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf, subsample=self.subsample,
            random_state=int(rng.integers(2**31 - 1)))
        model.fit(X, z)
        self.init_value = float(np.asarray(model.init_.constant_, dtype=np.float64).ravel()[0])
        parts: Dict[str, list] = {k: [] for k in _NODE_ARRAYS}
        roots, offset = [], 0
        for est in model.estimators_[:, 0]:
            tree = est.tree_
            roots.append(offset)
            shift = np.where(tree.children_left >= 0, offset, 0)  # leaves keep -1
            parts["left"].append(tree.children_left.astype(np.int64) + shift)
            parts["right"].append(tree.children_right.astype(np.int64) + shift)
            parts["feature"].append(tree.feature.astype(np.int64))
            parts["threshold"].append(tree.threshold.astype(np.float64))
            parts["value"].append(tree.value[:, 0, 0].astype(np.float64))
            offset += tree.node_count
        self.nodes = {k: np.concatenate(v) for k, v in parts.items()}
        self.roots = np.asarray(roots, dtype=np.int64)
        self.depth = int(max(est.tree_.max_depth for est in model.estimators_[:, 0]))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        left, right = self.nodes["left"], self.nodes["right"]
        feature, threshold = self.nodes["feature"], self.nodes["threshold"]
        n = len(X)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            inner = left[node] >= 0
            if not inner.any():
                break
            # scikit-learn compares float32 features with the float64 threshold: x <= t goes left
            go_left = X[rows, np.where(inner, feature[node], 0)] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        leaf_values = self.nodes["value"][node]
        out = np.full(n, self.init_value, dtype=np.float64)
        for t in range(leaf_values.shape[1]):  # accumulate tree by tree, as scikit-learn does
            out += self.learning_rate * leaf_values[:, t]
        return out

    def state(self) -> Dict[str, Any]:
        return {"init_value": self.init_value, "depth": self.depth}

    def arrays(self) -> Dict[str, np.ndarray]:
        return {**{f"nodes.{k}": v for k, v in self.nodes.items()}, "roots": self.roots}

    def _restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        names = [f"nodes.{k}" for k in _NODE_ARRAYS] + ["roots"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise CheckpointError(f"gbt predictor arrays lack '{missing[0]}'; the file is damaged")
        nodes = {k: np.asarray(arrays[f"nodes.{k}"]) for k in _NODE_ARRAYS}
        sizes = {len(v) for v in nodes.values()}
        roots = np.asarray(arrays["roots"], dtype=np.int64)
        if len(sizes) != 1 or len(roots) != self.n_estimators:
            raise CheckpointError(f"gbt predictor arrays are inconsistent (node arrays of lengths "
                                  f"{sorted(sizes)}, {len(roots)} roots for {self.n_estimators} trees)")
        count = sizes.pop()
        inner = nodes["left"] >= 0
        if (roots.min(initial=0) < 0 or roots.max(initial=0) >= count
                or (nodes["left"][inner] >= count).any() or (nodes["right"][inner] >= count).any()
                or (nodes["feature"][inner] >= self.encoding_size).any() or (nodes["feature"][inner] < 0).any()):
            raise CheckpointError("gbt predictor arrays point outside the tree or the encoding; the file is damaged")
        self.nodes = {"left": nodes["left"].astype(np.int64), "right": nodes["right"].astype(np.int64),
                      "feature": nodes["feature"].astype(np.int64),
                      "threshold": nodes["threshold"].astype(np.float64), "value": nodes["value"].astype(np.float64)}
        self.roots = roots
        self.init_value = float(state["init_value"])
        self.depth = int(state["depth"])
