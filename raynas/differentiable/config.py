"""Options of a differentiable search and of retraining its result, JSON-able so they travel to
Tune trials and into result files (and a whole protocol fits in one config file)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar, Union

from raynas.errors import ConfigError

C = TypeVar("C", bound="JsonConfig")


class JsonConfig:
    """``from_any`` (config, dict or JSON file, plus keyword overrides) and ``to_dict``."""

    def check(self) -> None:
        """Raise :class:`ConfigError` for an invalid value (subclasses)."""

    @classmethod
    def from_any(cls: Type[C], value: Union[C, Mapping[str, Any], str, Path, None] = None,
                 **overrides: Any) -> C:
        if value is None:
            data: Dict[str, Any] = {}
        elif isinstance(value, cls):
            data = dataclasses.asdict(value)  # type: ignore[call-overload]
        elif isinstance(value, Mapping):
            data = dict(value)
        else:
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ConfigError(f"config {path} must hold a JSON object")
        data.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(names)}")
        config = cls(**data)
        config.check()
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _positive(owner: str, **values: Any) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value <= 0:
            raise ConfigError(f"{owner} option '{key}' must be a positive number, got {value!r}")


def _non_negative(owner: str, **values: Any) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            raise ConfigError(f"{owner} option '{key}' must be a number >= 0, got {value!r}")


def _check_device(owner: str, device: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ConfigError(f"{owner} option 'device' must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


@dataclass
class DartsSearchConfig(JsonConfig):
    """One differentiable search: DARTS (``order`` 1 or 2, ``schedule`` constant) or TD-DARTS
    (``schedule`` linear from 10 to 0.1). Defaults are DARTS' CIFAR-10 search settings."""

    space: str = "nb201"
    space_options: Dict[str, Any] = field(default_factory=dict)
    #: options of ``space.build_search_network`` (NB201: channels, cells_per_stage; DARTS:
    #: channels, layers)
    supernet_options: Dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    #: extra ``load_dataset`` options (cache_dir, mean, std)
    data_options: Dict[str, Any] = field(default_factory=dict)
    #: resize the images once before the search (e.g. 16: CIFAR-10 at 16x16 for a CPU-sized
    #: search; the crop padding of the augmentation scales with it); None: as loaded
    image_size: Optional[int] = None
    #: images in each half of the training set (weights train on one, α on the other);
    #: None: the whole training set, split in two
    half_size: Optional[int] = None
    order: int = 1
    #: how an edge mixes its ops: "softmax" (DARTS, TD-DARTS: softmax(α/T)) or "gumbel" (GDAS:
    #: one op per edge sampled from a hard Gumbel-softmax at temperature T; first order only)
    relaxation: str = "softmax"
    #: temperature schedule: a name (constant, linear, exponential) or {"name": ..., options}
    schedule: Any = "constant"
    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: Optional[float] = 5.0
    arch_lr: float = 3e-4
    arch_betas: Tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    alpha_init_scale: float = 1e-3
    augment: bool = True
    seed: int = 0
    #: seed of the split into halves (the same data for every search seed by default)
    data_seed: int = 0
    device: str = "auto"
    bf16: bool = True             # autocast on CUDA for every pass but the second-order ones
    cpu_threads: Optional[int] = None
    max_steps_per_epoch: Optional[int] = None  # shorter epochs (tests, smoke runs)
    #: temperature the derivation uses; None: the supernet's current one (the last epoch's)
    derive_temperature: Optional[float] = None
    #: after every epoch, evaluate the supernet on this many images of the α half (eval mode,
    #: no augmentation): as it searches (``search_val_accuracy``) and with every edge set to its
    #: derived op (``derived_val_accuracy``); 0: no evaluation
    eval_images: int = 0
    #: a benchmark table (CSV/Parquet) to look each epoch's derived arch up in (NB201)
    table: Optional[str] = None
    table_key: str = "arch_str"
    #: reported name -> table column, e.g. {"test_accuracy": "c10_test_200ep"}
    table_metrics: Dict[str, str] = field(default_factory=dict)
    #: per-operator latency table of the expected-latency loss: the path of a table saved by
    #: OperatorLatencyTable.save, or "measure" to time the configured supernet's ops on ``device``
    latency_table: Optional[str] = None
    #: λ of the α loss CE + λ·E[latency] (per ms); 0: plain DARTS (latency only reported)
    latency_lambda: float = 0.0

    def check(self) -> None:
        from raynas.differentiable.temperature import make_schedule

        owner = "darts search"
        if self.order not in (1, 2) or isinstance(self.order, bool):
            raise ConfigError(f"darts search option 'order' must be 1 or 2, got {self.order!r}")
        _positive(owner, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                  arch_lr=self.arch_lr, alpha_init_scale=self.alpha_init_scale)
        _non_negative(owner, lr_min=self.lr_min, momentum=self.momentum,
                      weight_decay=self.weight_decay, arch_weight_decay=self.arch_weight_decay)
        for key in ("epochs", "batch_size"):
            if not isinstance(getattr(self, key), int):
                raise ConfigError(f"darts search option '{key}' must be an int, got {getattr(self, key)!r}")
        if self.grad_clip is not None:
            _positive(owner, grad_clip=self.grad_clip)
        for key in ("half_size", "max_steps_per_epoch", "cpu_threads", "image_size"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"darts search option '{key}' must be a positive int or null, got {value!r}")
        if isinstance(self.eval_images, bool) or not isinstance(self.eval_images, int) or self.eval_images < 0:
            raise ConfigError(f"darts search option 'eval_images' must be an int >= 0, got {self.eval_images!r}")
        if self.relaxation not in ("softmax", "gumbel"):
            raise ConfigError(f"darts search option 'relaxation' must be 'softmax' or 'gumbel', "
                              f"got {self.relaxation!r}")
        if self.relaxation == "gumbel" and self.order != 1:
            raise ConfigError("darts search option 'relaxation' = 'gumbel' (GDAS) is first order: set "
                              "order 1 (each forward pass samples its own ops, so the unrolled "
                              "second-order step has no fixed network to differentiate)")
        if self.derive_temperature is not None:
            _positive(owner, derive_temperature=self.derive_temperature)
        betas = tuple(self.arch_betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"darts search option 'arch_betas' must be two numbers in [0, 1), got {self.arch_betas!r}")
        self.arch_betas = (float(betas[0]), float(betas[1]))
        _check_device(owner, self.device)
        make_schedule(self.schedule)  # fails now, with the schedule's own message
        if self.table_metrics and not self.table:
            raise ConfigError("darts search option 'table_metrics' needs 'table' (the table's path)")
        self._check_latency()

    def _check_latency(self) -> None:
        _non_negative("darts search", latency_lambda=self.latency_lambda)
        spec = self.latency_table
        if spec is not None:
            if not isinstance(spec, str) or not spec:
                raise ConfigError(f"darts search option 'latency_table' must be a table file or 'measure', "
                                  f"got {spec!r}")
            if spec != "measure" and not Path(spec).is_file():
                raise ConfigError(f"darts search option 'latency_table': file {spec} does not exist; give "
                                  "a table saved by OperatorLatencyTable.save (e.g. from "
                                  "raynas.differentiable.latency.build_supernet_latency_table), or "
                                  "'measure' to time the configured supernet's ops")
        elif self.latency_lambda > 0:
            raise ConfigError(f"darts search option 'latency_lambda' = {self.latency_lambda} needs "
                              "'latency_table' (a table file, or 'measure')")

    @property
    def method(self) -> str:
        """A short name: ``darts1``/``darts2`` (constant T = 1), ``td-darts1``/``td-darts2``
        (linear decay), ``gdas1`` (Gumbel relaxation), else ``<schedule>-darts<order>``."""
        from raynas.differentiable.temperature import make_schedule

        schedule = make_schedule(self.schedule)
        if self.relaxation == "gumbel":
            return f"gdas{self.order}"
        if schedule.name == "constant" and getattr(schedule, "t", None) == 1.0:
            return f"darts{self.order}"
        if schedule.name == "linear":
            floor = getattr(schedule, "t_floor", None)
            return f"td-darts{self.order}" + ("" if floor is None else f"-floor{floor:g}")
        return f"{schedule.name}-darts{self.order}"


@dataclass
class RetrainConfig(JsonConfig):
    """Train one arch from scratch; defaults are DARTS' CIFAR-10 evaluation recipe (600 epochs,
    batch 96, SGD 0.025 cosine, cutout 16, drop-path 0.2, auxiliary weight 0.4)."""

    space: str = "darts"
    #: options of the space (DARTS: channels 36, layers 20, auxiliary)
    space_options: Dict[str, Any] = field(default_factory=dict)
    arch: Dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    data_options: Dict[str, Any] = field(default_factory=dict)
    #: use only this many training images (None: all); evaluation is on the test split
    train_size: Optional[int] = None
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: Optional[float] = 5.0
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    cutout: int = 16
    augment: bool = True
    label_smoothing: float = 0.0
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = False
    cpu_threads: Optional[int] = None
    max_steps_per_epoch: Optional[int] = None
    eval_every: int = 1            # epochs between test evaluations (the last one always)
    eval_batch_size: int = 500
    #: split evaluated each epoch: 'test' (the official test set; training uses every training
    #: image) or 'val' (carved from the training images, for sources without a test set)
    eval_split: str = "test"
    #: write the trained model here as a raynas export (model.safetensors + config.json) in a
    #: folder named <arch_id>-seed<seed>; None: do not export
    export_dir: Optional[str] = None

    def check(self) -> None:
        owner = "retrain"
        _positive(owner, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                  eval_every=self.eval_every, eval_batch_size=self.eval_batch_size)
        _non_negative(owner, lr_min=self.lr_min, momentum=self.momentum, weight_decay=self.weight_decay,
                      auxiliary_weight=self.auxiliary_weight, drop_path_prob=self.drop_path_prob,
                      cutout=self.cutout, label_smoothing=self.label_smoothing)
        if self.drop_path_prob >= 1:
            raise ConfigError(f"retrain option 'drop_path_prob' must be below 1, got {self.drop_path_prob}")
        if self.grad_clip is not None:
            _positive(owner, grad_clip=self.grad_clip)
        for key in ("train_size", "max_steps_per_epoch", "cpu_threads"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"retrain option '{key}' must be a positive int or null, got {value!r}")
        if self.eval_split not in ("test", "val"):
            raise ConfigError(f"retrain option 'eval_split' must be 'test' or 'val', got {self.eval_split!r}")
        if not isinstance(self.arch, dict) or not self.arch:
            raise ConfigError("retrain option 'arch' must be the arch to train (a JSON object, e.g. "
                              "a derived genotype)")
        _check_device(owner, self.device)


def merge_variant(config: Mapping[str, Any]) -> Dict[str, Any]:
    """A sweep trial's config with its ``variant`` (a dict of options) merged in."""
    out = dict(config)
    variant = out.pop("variant", None) or {}
    out.update(variant)
    return out
