"""``SupernetTrainConfig``: everything a supernet training run needs, JSON-able so it travels
to Ray Train workers and into checkpoints (a resumed run checks it matches)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from raynas.errors import ConfigError


@dataclass
class SupernetTrainConfig:
    """Options of ``raynas train`` / :func:`trainables.supernet.train_supernet`."""

    space: str = "ofa_mbv3_cifar"
    space_options: Dict[str, Any] = field(default_factory=dict)
    supernet_options: Dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    data_options: Dict[str, Any] = field(default_factory=dict)
    output: str = "raynas_results/supernet"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-5
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    grad_clip: Optional[float] = 5.0
    kd_temperature: float = 1.0
    sampler: str = "sandwich"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    bf16: bool = True            # autocast on CUDA only
    channels_last: bool = False
    compile: bool = False
    max_steps: Optional[int] = None   # stop early (tests, smoke runs)
    checkpoint_every: int = 1         # epochs
    eval_calib_batches: int = 4
    eval_batch_size: int = 256

    @classmethod
    def from_any(cls, value: Union["SupernetTrainConfig", Mapping[str, Any], str, Path, None] = None,
                 **overrides: Any) -> "SupernetTrainConfig":
        """From a config, a dict, or a JSON file path; keyword overrides win."""
        if value is None:
            data: Dict[str, Any] = {}
        elif isinstance(value, cls):
            data = dataclasses.asdict(value)
        elif isinstance(value, Mapping):
            data = dict(value)
        else:
            path = Path(value)
            if not path.exists():
                raise ConfigError(f"training config file {path} does not exist")
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"training config {path} is not valid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ConfigError(f"training config {path} must hold a JSON object, got {type(data).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "checkpoint_every": self.checkpoint_every}
        for key, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"training option '{key}' must be a positive number, got {value!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"max_steps must be positive, got {self.max_steps}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
