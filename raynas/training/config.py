"""``SupernetTrainConfig``: everything a supernet training run needs, JSON-able so it travels
to Ray Train workers and into checkpoints (a resumed run checks it matches)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from raynas.errors import ConfigError


#: options that define what is trained; a resumed run must match the checkpoint in all of them
TRAINING_FIELDS = ("space", "space_options", "supernet_options", "data", "data_options", "epochs",
                   "batch_size", "lr", "optimizer", "momentum", "weight_decay", "warmup_epochs",
                   "label_smoothing", "grad_clip", "kd_temperature", "alpha_lr", "sampler",
                   "sampler_options", "standalone", "augment", "flip", "crop_pad", "seed")
OPTIMIZERS = ("sgd", "adamw")
#: options of earlier releases that a checkpoint's config may still hold; dropped on reading
#: (``eval_calib_batches`` became ``calib_images``)
RETIRED_FIELDS = ("eval_calib_batches",)
DDP_SYNC_MODES = ("no_sync", "every")


@dataclass
class SupernetTrainConfig:
    """Options of ``raynas train`` / :func:`trainables.supernet.train_supernet`.

    ``batch_size`` is the global batch: with ``num_workers`` data-parallel workers each rank
    trains ``batch_size / num_workers`` images of every step, and with ``sync_bn`` the run
    computes what one process with the whole batch computes.
    """

    space: str = "ofa_mbv3_cifar"
    space_options: Dict[str, Any] = field(default_factory=dict)
    supernet_options: Dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    data_options: Dict[str, Any] = field(default_factory=dict)
    output: str = "raynas_results/supernet"
    epochs: float = 10
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"            # sgd (nesterov momentum) | adamw
    momentum: float = 0.9
    weight_decay: float = 3e-5
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    grad_clip: Optional[float] = 5.0
    kd_temperature: float = 1.0
    alpha_lr: float = 5e-3            # Adam on architecture logits (hybrid convex / weighted modes)
    sampler: str = "sandwich"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    standalone: bool = False          # train the fixed sampler's arch as a static model from scratch
    augment: bool = True              # random crop (zero padding crop_pad) and, where allowed, flip
    flip: Optional[bool] = None       # horizontal flips; None: when the dataset allows (not digits)
    crop_pad: Optional[int] = None    # crop padding in pixels; None: image size / 8 (4 at 32 px)
    seed: int = 0
    device: str = "auto"
    bf16: bool = True                 # autocast on CUDA only
    channels_last: bool = False
    compile: bool = False
    data_on_device: bool = True       # keep the uint8 training images on the GPU
    # ---- data parallelism (Ray Train)
    num_workers: int = 0              # 0: train in this process; N: Ray Train TorchTrainer, N ranks
    use_gpu: Optional[bool] = None    # Ray Train workers on GPUs (default: when device is not cpu and Ray has GPUs)
    cpu_threads: Optional[int] = None  # torch CPU threads per process (None: torch's default)
    sync_bn: bool = True              # batch statistics over the global batch (exact DDP = 1 process)
    ddp_sync: str = "no_sync"         # no_sync: one gradient all-reduce per step; every: one per subnet
    max_failures: int = 0             # Ray Train restarts from the latest checkpoint
    storage_path: Optional[str] = None  # Ray Train storage (shared by all nodes); default OUTPUT/ray_train
    # ---- run control
    max_steps: Optional[int] = None   # stop early (tests, smoke runs)
    checkpoint_every: int = 1         # epochs
    checkpoint_every_steps: Optional[int] = None
    log_every: int = 50               # steps between loss read-backs (a device sync)
    record_subnets: bool = False      # each rank writes the subnets it activated (OUTPUT/subnets)
    fail_at_step: Optional[int] = None  # testing: raise once at this step to exercise recovery
    # ---- the final report's weight-inherited accuracy; the pool and export default to the same
    calib_images: Optional[int] = None  # BN-calibration images (None: the whole calib split)
    eval_batch_size: int = 250

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
        for key in RETIRED_FIELDS:
            data.pop(key, None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "eval_batch_size": self.eval_batch_size,
                    "checkpoint_every": self.checkpoint_every, "log_every": self.log_every,
                    "alpha_lr": self.alpha_lr}
        for key, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"training option '{key}' must be a positive number, got {value!r}")
        for key in ("max_steps", "checkpoint_every_steps", "cpu_threads", "fail_at_step", "calib_images"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"training option '{key}' must be a positive integer or null, got {value!r}")
        if self.flip is not None and not isinstance(self.flip, bool):
            raise ConfigError(f"training option 'flip' must be true, false or null, got {self.flip!r}")
        if self.crop_pad is not None and (isinstance(self.crop_pad, bool) or not isinstance(self.crop_pad, int)
                                          or self.crop_pad < 0):
            raise ConfigError(f"training option 'crop_pad' must be an integer >= 0 or null, got {self.crop_pad!r}")
        for key in ("num_workers", "max_failures"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"training option '{key}' must be an integer >= 0, got {value!r}")
        if self.num_workers > 1 and self.batch_size % self.num_workers:
            raise ConfigError(f"batch_size {self.batch_size} (the global batch) must be divisible by "
                              f"num_workers {self.num_workers}; pick a multiple of {self.num_workers}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.ddp_sync not in DDP_SYNC_MODES:
            raise ConfigError(f"ddp_sync must be one of {DDP_SYNC_MODES}, got {self.ddp_sync!r}")
        if self.standalone and self.sampler != "fixed":
            raise ConfigError("standalone training trains one arch: set sampler='fixed' and "
                              "sampler_options={'arch': ...}")
        for key in ("space_options", "supernet_options", "data_options", "sampler_options"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"training option '{key}' must be a mapping, got {getattr(self, key)!r}")

    def training_differences(self, other: "SupernetTrainConfig") -> Dict[str, Any]:
        """Fields that define the training and differ between two configs: {name: (self, other)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in TRAINING_FIELDS
                if json.dumps(mine[k], sort_keys=True) != json.dumps(theirs[k], sort_keys=True)}

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
