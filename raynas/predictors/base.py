"""The ``Predictor`` interface: fit an arch -> metric regressor on ``space.encode(arch)``, predict,
score, and save/load it safely.

A saved predictor is a folder with ``predictor.json`` (kind, hyperparameters, the space spec and
its ``encoding_version``, fit summary) and ``arrays.safetensors`` (every learned array). Nothing is
pickled, so loading a file cannot run code. Loading checks the encoding: a predictor fitted on
another space, other space options or an older ``encode`` refuses to load instead of silently
predicting nonsense. Prediction is plain numpy, so a surrogate evaluator needs neither torch nor
scikit-learn in the processes that query it (they load only to fit).
"""
from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type, Union

import numpy as np

from raynas.arch import Arch, canonical
from raynas.errors import CheckpointError, ConfigError, DataError, clip, shorten
from raynas.integrity import FILES_KEY, check_digest, file_digest
from raynas.io import atomic_directory
from raynas.registry import Registry
from raynas.predictors.data import PredictorData, encode_archs, from_pairs
from raynas.predictors.metrics import ranking_metrics

FORMAT = "raynas-predictor"
FORMAT_VERSION = 1
CONFIG_FILE = "predictor.json"
ARRAYS_FILE = "arrays.safetensors"
PathLike = Union[str, os.PathLike]

#: built-in predictor kind -> module that registers it, imported on first use (scikit-learn
#: loads only then)
PREDICTOR_KINDS: Dict[str, str] = {
    "mlp": "raynas.predictors.mlp",
    "gbt": "raynas.predictors.gbt",
}
PREDICTORS: Registry[Type["Predictor"]] = Registry("predictor kind", lazy=PREDICTOR_KINDS)


def register_predictor(kind: str) -> Callable[[Type["Predictor"]], Type["Predictor"]]:
    """Class decorator making a :class:`Predictor` subclass available as ``kind``."""
    return PREDICTORS.register(kind)


def list_predictors() -> List[str]:
    """Every predictor kind (``make_predictor(kind, space)``)."""
    return PREDICTORS.names()


class Predictor(ABC):
    """Regressor from ``space.encode(arch)`` to one metric (e.g. weight-inherited accuracy).

    Args:
        space: the SearchSpace whose encoding the predictor reads.
        metric: name of the predicted metric (what a surrogate evaluator reports).
        seed: seeds every random choice of fitting (initialisation, shuffling, subsampling).
        target: what the model regresses on (see :class:`TargetTransform`): ``"standard"``
            (the residual over the mean, in units of the standard deviation, as OFA) or
            ``"quantile"`` (normal scores of the ranks; robust to a long tail of failed archs).
            Predictions always come back in the metric's units.
    """

    kind: str = ""

    def __init__(self, space, metric: str = "accuracy", seed: int = 0, target: str = "standard") -> None:
        self.space = space
        self.metric = str(metric)
        self.seed = int(seed)
        self.target = TargetTransform(target)
        self.fit_info: Dict[str, Any] = {}
        self._fitted = False

    # ------------------------------------------------------------- defined by each kind
    @abstractmethod
    def _fit(self, X: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> None:
        """Learn from float32 encodings ``X`` (n, encoding_size) and transformed float64
        targets ``z`` (mean 0, unit scale)."""

    @abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """float64 predictions of ``z`` for float32 encodings (numpy only)."""

    @abstractmethod
    def hyperparameters(self) -> Dict[str, Any]:
        """JSON-able constructor options (saved; passed back to the constructor on load)."""

    @abstractmethod
    def arrays(self) -> Dict[str, np.ndarray]:
        """Every learned array, by name (saved as safetensors)."""

    @abstractmethod
    def _restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        """Take back what :meth:`arrays` and :meth:`state` returned; raise CheckpointError if
        they do not fit."""

    def state(self) -> Dict[str, Any]:
        """JSON-able learned scalars (e.g. the target mean)."""
        return {}

    # ------------------------------------------------------------- fitting and predicting
    @property
    def encoding_size(self) -> int:
        return int(self.space.encoding_size)

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit(self, data: Union[PredictorData, Sequence[Arch]], values: Optional[Sequence[float]] = None
            ) -> "Predictor":
        """Fit on a :class:`PredictorData` or on archs and their values."""
        if not isinstance(data, PredictorData):
            if values is None:
                raise ConfigError("fit(archs, values): pass the values of the archs")
            data = from_pairs(self.space, list(data), list(values), self.metric)
        return self.fit_encoded(data.X, data.y)

    def fit_encoded(self, X: np.ndarray, y: np.ndarray) -> "Predictor":
        X, y = self._check_X(X), np.asarray(y, dtype=np.float64).ravel()
        if len(X) != len(y):
            raise DataError(f"{len(X)} encodings but {len(y)} target values")
        if len(y) < 2:
            raise DataError(f"a predictor needs at least 2 archs to fit, got {len(y)}")
        if not np.isfinite(y).all():
            raise DataError("target values must be finite (drop failed evaluations first)")
        start = time.perf_counter()
        self.target.fit(y)
        self._fit(X, self.target.forward(y), np.random.default_rng(self.seed))
        self._fitted = True
        self.fit_info = {"num_train": int(len(y)), "fit_seconds": time.perf_counter() - start,
                         "target_mean": float(y.mean()), "target_std": float(y.std())}
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """Predicted metric of each arch (float64)."""
        return self.predict_encoded(encode_archs(self.space, list(archs)))

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        if not self._fitted:
            raise ConfigError(f"this {self.kind} predictor is not fitted yet; call fit() or load() first")
        X = self._check_X(X)
        if len(X) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.target.inverse(np.asarray(self._predict(X), dtype=np.float64).ravel())

    def score(self, data: Union[PredictorData, Sequence[Arch]], values: Optional[Sequence[float]] = None
              ) -> Dict[str, float]:
        """Held-out Kendall τ, Spearman ρ and RMSE (see :func:`ranking_metrics`)."""
        if not isinstance(data, PredictorData):
            if values is None:
                raise ConfigError("score(archs, values): pass the true values of the archs")
            data = from_pairs(self.space, list(data), list(values), self.metric)
        return ranking_metrics(data.y, self.predict_encoded(data.X))

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.encoding_size:
            raise DataError(f"encodings must have shape (n, {self.encoding_size}) for space "
                            f"'{self.space.name}', got {X.shape}")
        return X

    # ------------------------------------------------------------- saving and loading
    def config(self) -> Dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                "metric": self.metric, "seed": self.seed, "hyperparameters": self.hyperparameters(),
                "target": self.target.name, "target_state": self.target.state(),
                "space": self.space.spec(), "encoding_version": str(self.space.encoding_version),
                "encoding_size": self.encoding_size, "state": self.state(), "fit": self.fit_info}

    def save(self, path: PathLike) -> Path:
        """Write the predictor folder atomically (a reader sees the old one or the new one)."""
        from safetensors.numpy import save

        if not self._fitted:
            raise ConfigError("cannot save a predictor that is not fitted")
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays().items()}
        if any(k.startswith(TargetTransform.PREFIX) for k in arrays):
            raise ConfigError(f"predictor array names must not start with '{TargetTransform.PREFIX}'")
        arrays.update(self.target.arrays())
        data = save(arrays, metadata={"format": FORMAT, "kind": self.kind})
        # the arrays' digest is checked on load: damage after saving is an error, not a bad prediction
        config = {**self.config(), FILES_KEY: {ARRAYS_FILE: file_digest(data)}}
        text = json.dumps(canonical(config), indent=2, sort_keys=True, allow_nan=False) + "\n"
        with atomic_directory(path) as tmp:
            (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
            (tmp / ARRAYS_FILE).write_bytes(data)
        return Path(path)

    @staticmethod
    def load(path: PathLike, space=None) -> "Predictor":
        """A saved predictor; ``space`` (default: rebuilt from the saved spec) must encode archs
        exactly as the space it was fitted on did."""
        return load_predictor(path, space)

    def __repr__(self) -> str:
        status = f"fitted on {self.fit_info.get('num_train')}" if self._fitted else "not fitted"
        return f"{type(self).__name__}<{self.space.name}:{self.metric}>({status})"


class TargetTransform:
    """Maps target values to the unit scale a model regresses on, and predictions back.

    ``standard``: ``z = (y - mean) / std``, so the model learns the residual over the mean
    (OFA). ``quantile``: ``z`` = normal score of each value's rank among the training targets;
    predictions map back through the empirical quantile function of the training targets,
    continued linearly (slope ``std``) beyond the extreme normal scores, so it stays strictly
    increasing and the best candidates keep distinct values.
    """

    NAMES = ("standard", "quantile")
    PREFIX = "target."

    def __init__(self, name: str = "standard") -> None:
        if name not in self.NAMES:
            raise ConfigError(f"unknown target transform '{name}'; choose one of {', '.join(self.NAMES)}")
        self.name = name
        self.mean, self.std = 0.0, 1.0
        self.sorted = np.zeros(0, dtype=np.float64)  # training targets, ascending (quantile)

    def fit(self, y: np.ndarray) -> None:
        self.mean = float(np.mean(y))
        std = float(np.std(y))
        self.std = std if std > 1e-12 else 1.0
        self.sorted = np.sort(np.asarray(y, dtype=np.float64)) if self.name == "quantile" else self.sorted[:0]

    def _scores(self, n: int) -> np.ndarray:
        from scipy.stats import norm
        return norm.ppf((np.arange(n) + 0.5) / n)

    def forward(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.name == "standard":
            return (y - self.mean) / self.std
        from scipy.stats import norm, rankdata
        return norm.ppf((rankdata(y, method="average") - 0.5) / len(y))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        if self.name == "standard":
            return self.mean + self.std * z
        knots = self._scores(len(self.sorted))
        out = np.interp(z, knots, self.sorted)
        low, high = z < knots[0], z > knots[-1]
        out[low] = self.sorted[0] + (z[low] - knots[0]) * self.std
        out[high] = self.sorted[-1] + (z[high] - knots[-1]) * self.std
        return out

    def state(self) -> Dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def arrays(self) -> Dict[str, np.ndarray]:
        return {self.PREFIX + "sorted": self.sorted} if self.name == "quantile" else {}

    def restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])
        if self.name == "quantile":
            values = arrays.get(self.PREFIX + "sorted")
            if values is None or len(values) < 2 or np.any(np.diff(values) < 0):
                raise CheckpointError("the quantile target transform lacks its sorted training "
                                      "targets (or they are not sorted); the file is damaged")
            self.sorted = np.asarray(values, dtype=np.float64)


def predictor_class(kind: str) -> Type["Predictor"]:
    return PREDICTORS.get(kind)


def make_predictor(kind: str, space, metric: str = "accuracy", seed: int = 0, **options: Any) -> Predictor:
    """``make_predictor("mlp", space, epochs=300)`` or ``make_predictor("gbt", space)``."""
    cls = predictor_class(kind)
    try:
        return cls(space, metric=metric, seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(f"bad options for predictor '{kind}': {exc}") from exc


def load_predictor(path: PathLike, space=None) -> Predictor:
    from safetensors.numpy import load

    folder = Path(path)
    config_path, arrays_path = folder / CONFIG_FILE, folder / ARRAYS_FILE
    for p in (config_path, arrays_path):
        if not p.is_file():
            raise CheckpointError(f"{p} is missing: {folder} is not a saved raynas predictor "
                                  "(a folder written by Predictor.save)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc}); save the predictor again") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a raynas predictor config (format "
                              f"{clip(config.get('format') if isinstance(config, dict) else None)})")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{config_path} has predictor format version {config.get('format_version')}, "
                              f"this raynas reads version {FORMAT_VERSION}; refit and save the predictor")
    missing = [k for k in ("kind", "metric", "space", "encoding_version", "encoding_size",
                           "hyperparameters", "state", "target", "target_state") if k not in config]
    if missing:
        raise CheckpointError(f"{config_path} lacks {', '.join(missing)}; it is damaged or from another version")
    space = _checked_space(config, space, folder)
    data = arrays_path.read_bytes()
    check_digest(ARRAYS_FILE, str(arrays_path), data, config.get(FILES_KEY), str(config_path))
    try:
        arrays = load(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{arrays_path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                              "save the predictor again") from exc
    kind = str(config["kind"])
    if kind not in PREDICTORS:
        raise CheckpointError(f"{config_path}: unknown predictor kind '{kind}' (known: "
                              f"{', '.join(list_predictors())})")
    predictor = make_predictor(kind, space, metric=config["metric"], seed=int(config.get("seed", 0)),
                               target=str(config["target"]), **config["hyperparameters"])
    prefix = TargetTransform.PREFIX
    predictor.target.restore({k: v for k, v in arrays.items() if k.startswith(prefix)},
                             config["target_state"])
    predictor._restore({k: v for k, v in arrays.items() if not k.startswith(prefix)}, config["state"])
    predictor.fit_info = dict(config.get("fit") or {})
    predictor._fitted = True
    return predictor


def _checked_space(config: Mapping[str, Any], space, folder: Path):
    """The space to predict for, after checking it encodes like the one the predictor saw."""
    from raynas.registry import space_from_spec

    saved_spec, saved_version = config["space"], str(config["encoding_version"])
    saved_size = int(config["encoding_size"])
    if space is None:
        space = space_from_spec(saved_spec)
    else:
        spec = space.spec()
        if not isinstance(saved_spec, Mapping) or canonical(spec) != canonical(
                {"name": saved_spec.get("name"), "options": saved_spec.get("options") or {}}):
            raise CheckpointError(
                f"the predictor in {folder} was fitted on space {_fmt_spec(saved_spec)}, not on "
                f"{_fmt_spec(spec)}: its encoding does not fit these archs. Load it without a space "
                "(it rebuilds its own) or fit a predictor on this space")
    version = str(space.encoding_version)
    if version != saved_version or space.encoding_size != saved_size:
        raise CheckpointError(
            f"the predictor in {folder} was fitted on encoding version {clip(saved_version, 60)} "
            f"({saved_size} features) of space '{space.name}', but this raynas encodes version "
            f"{version!r} ({space.encoding_size} features); refit the predictor on fresh evaluations")
    return space


def _fmt_spec(spec: Any) -> str:
    if not isinstance(spec, Mapping):
        return clip(spec)
    opts = ", ".join(f"{k}={v!r}" for k, v in sorted((spec.get("options") or {}).items()))
    return shorten(f"'{spec.get('name')}'({opts})")
