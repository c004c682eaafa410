"""Once-for-All's accuracy predictor: an MLP on the arch encoding (3 hidden layers of 400, ReLU)
that predicts a residual over the mean accuracy of its training archs.

By default targets are standardised (``(y - mean) / std``, see
:class:`raynas.predictors.base.TargetTransform`), so the network learns the residual over the
mean at unit scale whatever the metric's units. Everything is numpy (no torch: fitting and
predicting stay cheap to import in any process): weights start from the predictor's seeded
generator (PyTorch's default uniform bounds), training is backpropagation with Adam, a cosine
learning rate and mini-batches in a seeded order, and prediction reads the same arrays. ``ensemble > 1`` averages independently initialised members, which ranks more stably
on small training sets.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from raynas.errors import CheckpointError, ConfigError
from raynas.predictors.base import Predictor, register_predictor

Layer = Tuple[np.ndarray, np.ndarray]  # (weight (out, in), bias (out,))


@register_predictor("mlp")
class MLPPredictor(Predictor):
    """MLP accuracy predictor (OFA: ``hidden=(400, 400, 400)``)."""

    kind = "mlp"

    def __init__(self, space, metric: str = "accuracy", seed: int = 0, target: str = "standard", *,
                 hidden: Sequence[int] = (400, 400, 400), epochs: int = 100, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 1e-4, ensemble: int = 1) -> None:
        super().__init__(space, metric, seed, target)
        self.hidden = tuple(int(h) for h in hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden must list positive layer widths, got {hidden!r}")
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("ensemble", ensemble)):
            if int(value) < 1:
                raise ConfigError(f"MLP predictor option {name} must be >= 1, got {value}")
        if not (lr > 0 and weight_decay >= 0):
            raise ConfigError(f"MLP predictor needs lr > 0 and weight_decay >= 0 (got {lr}, {weight_decay})")
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.lr, self.weight_decay, self.ensemble = float(lr), float(weight_decay), int(ensemble)
        self.members: List[List[Layer]] = []

    def hyperparameters(self) -> Dict[str, Any]:
        return {"hidden": list(self.hidden), "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "weight_decay": self.weight_decay, "ensemble": self.ensemble}

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> None:
        self.members = [self._train_member(X, z, rng) for _ in range(self.ensemble)]

    def _widths(self) -> List[int]:
        return [self.encoding_size, *self.hidden, 1]

    def _init_layers(self, rng: np.random.Generator) -> List[Layer]:
        layers = []
        widths = self._widths()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # PyTorch's nn.Linear default range
            layers.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                           rng.uniform(-bound, bound, fan_out).astype(np.float32)))
        return layers

    def _train_member(self, X: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> List[Layer]:
        layers = self._init_layers(rng)
        params = [p for layer in layers for p in layer]
        adam = _Adam(params, self.lr, self.weight_decay)
        target = z.astype(np.float32)
        n = len(X)
        batch = min(self.batch_size, n)
        steps_per_epoch = math.ceil(n / batch)
        total = self.epochs * steps_per_epoch
        step = 0
        for _ in range(self.epochs):
            order = rng.permutation(n)
            for s in range(steps_per_epoch):
                idx = order[s * batch:(s + 1) * batch]
                grads = _mse_gradients(layers, X[idx], target[idx])
                # cosine decay to 0 over all steps (the factor of step 0 is 1)
                adam.step(grads, 0.5 * (1.0 + math.cos(math.pi * step / total)))
                step += 1
        return [(params[i], params[i + 1]) for i in range(0, len(params), 2)]

    # ------------------------------------------------------------------ predict
    def _predict(self, X: np.ndarray) -> np.ndarray:
        total = np.zeros(len(X), dtype=np.float64)
        for layers in self.members:
            total += _forward_numpy(layers, X)
        return total / len(self.members)

    # ------------------------------------------------------------------ state
    def arrays(self) -> Dict[str, np.ndarray]:
        out = {}
        for m, layers in enumerate(self.members):
            for i, (w, b) in enumerate(layers):
                out[f"member{m}.layer{i}.weight"] = w
                out[f"member{m}.layer{i}.bias"] = b
        return out

    def _restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        widths = self._widths()
        members = []
        for m in range(self.ensemble):
            layers = []
            for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
                names = (f"member{m}.layer{i}.weight", f"member{m}.layer{i}.bias")
                missing = [n for n in names if n not in arrays]
                if missing:
                    raise CheckpointError(f"MLP predictor arrays lack '{missing[0]}'; the file is damaged")
                w, b = (np.asarray(arrays[n], dtype=np.float32) for n in names)
                if w.shape != (fan_out, fan_in) or b.shape != (fan_out,):
                    raise CheckpointError(f"MLP predictor layer {i} has shape {w.shape}, expected "
                                          f"{(fan_out, fan_in)} for hidden={list(self.hidden)}")
                layers.append((w, b))
            members.append(layers)
        expected = 2 * self.ensemble * (len(widths) - 1)
        if len(arrays) != expected:
            raise CheckpointError(f"MLP predictor file holds {len(arrays)} arrays, expected {expected}")
        self.members = members


class _Adam:
    """Adam with L2 weight decay added to the gradient (as ``torch.optim.Adam``), in place."""

    def __init__(self, params: List[np.ndarray], lr: float, weight_decay: float,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.weight_decay = params, lr, weight_decay
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: List[np.ndarray], lr_factor: float) -> None:
        self.t += 1
        lr = self.lr * lr_factor
        c1, c2 = 1.0 - self.b1 ** self.t, 1.0 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.weight_decay:
                g = g + self.weight_decay * p
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * g * g
            p -= (lr / c1) * m / (np.sqrt(v / c2) + self.eps)


def _mse_gradients(layers: Sequence[Layer], x: np.ndarray, target: np.ndarray) -> List[np.ndarray]:
    """Gradients of mean((mlp(x) - target)^2) w.r.t. every weight and bias, by backpropagation."""
    activations = [x]
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
        activations.append(h)
    delta = (2.0 / len(x)) * (activations[-1][:, 0] - target)[:, None]
    grads: List[np.ndarray] = []
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        grads.append(delta.sum(axis=0))                  # bias
        grads.append(delta.T @ activations[i])           # weight
        if i > 0:
            delta = (delta @ w) * (activations[i] > 0)   # through the ReLU of layer i - 1
    grads.reverse()  # [w0, b0, w1, b1, ...]
    return [g.astype(np.float32, copy=False) for g in grads]


def _forward_numpy(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            np.maximum(h, 0.0, out=h)
    return h[:, 0].astype(np.float64)
