"""Once-for-All's accuracy predictor: an MLP on the arch encoding (3 hidden layers of 400, ReLU)
that predicts a residual over the mean accuracy of its training archs.

By default targets are standardised (``(y - mean) / std``, see
:class:`raynas.predictors.base.TargetTransform`), so the network learns the residual over the
mean at unit scale whatever the metric's units. Weights start from the predictor's seeded
generator (PyTorch's default uniform bounds); fitting is torch (``torch.optim.Adam`` with L2
weight decay, a per-step ``CosineAnnealingLR`` to zero, mini-batches in a seeded order), imported
only when a predictor is fitted. The learned weights are kept and saved as numpy arrays and
prediction is a numpy forward pass, so a process that only queries a fitted predictor (a
surrogate evaluator) never loads torch. ``ensemble > 1`` averages independently initialised
members, which ranks more stably on small training sets.
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
        import torch
        import torch.nn.functional as F

        # leaf tensors holding the seeded numpy init (nn.Linear would draw from torch's global RNG)
        params = [torch.tensor(a, requires_grad=True) for layer in self._init_layers(rng) for a in layer]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        n = len(X)
        batch = min(self.batch_size, n)
        steps_per_epoch = math.ceil(n / batch)
        # cosine decay to 0 over all steps (step 0 uses the full lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs * steps_per_epoch)
        inputs, target = torch.as_tensor(X), torch.as_tensor(z, dtype=torch.float32)

        def forward(x: torch.Tensor) -> torch.Tensor:
            for i in range(0, len(params), 2):
                x = F.linear(x, params[i], params[i + 1])
                if i + 2 < len(params):
                    x = F.relu(x)
            return x[:, 0]

        for _ in range(self.epochs):
            order = torch.from_numpy(rng.permutation(n))
            for s in range(steps_per_epoch):
                idx = order[s * batch:(s + 1) * batch]
                loss = F.mse_loss(forward(inputs[idx]), target[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        arrays = [p.detach().numpy() for p in params]
        return [(arrays[i], arrays[i + 1]) for i in range(0, len(arrays), 2)]

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


def _forward_numpy(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            np.maximum(h, 0.0, out=h)
    return h[:, 0].astype(np.float64)
