"""Weight-inherited accuracy: a subnet's top-1 with the supernet's shared weights after BN
recalibration, plus its analytic cost.

This evaluator holds the model, so it runs in-process (inside a pool actor); search trials reach
it through the pool, never by pickling it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ContextManager, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from raynas.accuracy import top1
from raynas.arch import Arch
from raynas.bn import recalibrate_bn
from raynas.data.batches import iterate_batches
from raynas.data.dataset import ImageDataset, Split
from raynas.data.transforms import resize, to_float
from raynas.device import bf16_autocast
from raynas.errors import CheckpointError, ConfigError
from raynas.evaluators.base import Evaluator, Metrics
from raynas.rng import derive_rng
from raynas.supernet import Supernet

SplitLike = Union[Split, Tuple[torch.Tensor, torch.Tensor]]
#: evaluation batch (BN calibration and validation) everywhere: it divides the default calibration
#: splits (digits 250 images, CIFAR-10 2,000), so every calibration batch is full
DEFAULT_EVAL_BATCH = 250
#: dataset options that decide what the calib and val splits hold (the only ones evaluation
#: takes from a checkpoint or an export config: no paths)
SPLIT_OPTIONS = ("image_size", "val_size", "calib_size", "mean", "std")


def _as_split(value: SplitLike, name: str) -> Split:
    if isinstance(value, Split):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return Split(value[0], value[1])
    raise ConfigError(f"{name} must be a raynas.data.Split or (uint8 images, int64 labels), "
                      f"got {type(value).__name__}")


class WeightInheritedEvaluator(Evaluator):
    """Top-1 accuracy (%) and mean cross-entropy (``loss``) of each arch with inherited supernet
    weights.

    Per arch: ``supernet.activate(arch)``; inputs resized to ``supernet.input_resolution(arch)``
    when it is not None; BN statistics recalibrated on ``calib_images`` images of ``calib``
    (default: all of them; see :func:`calibration_batches` -- the same batches for every arch,
    so results do not depend on evaluation order); accuracy over all of ``val`` in eval mode.
    Calibration and validation images are normalised and moved to ``device`` once, at
    construction; with ``channels_last`` they and the supernet use the NHWC memory format
    (convolutions run 2-3x faster on CPU; the accuracy is the same).
    """

    metrics = ("accuracy", "loss", "params", "macs", "flops")
    #: a model per evaluation: never probed in the driver (it holds no model there)
    preferred_batch_size = 8

    def __init__(self, supernet: Supernet, calib: SplitLike, val: SplitLike, *,
                 calib_images: Optional[int] = None, batch_size: int = DEFAULT_EVAL_BATCH,
                 device: Union[str, torch.device] = "cpu", mean: Sequence[float],
                 std: Sequence[float], bf16: bool = False, calib_seed: int = 0,
                 channels_last: bool = False) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.bf16 = bool(bf16) and self.device.type == "cuda"
        self.channels_last = bool(channels_last)
        self.supernet = supernet.to(self.device)
        if self.channels_last:
            self.supernet = self.supernet.to(memory_format=torch.channels_last)
        calib_split, val_split = _as_split(calib, "calib"), _as_split(val, "val")
        if len(val_split) == 0:
            raise ConfigError("the val split is empty; weight-inherited accuracy needs images")
        self._calib = [self._to_device_float(x)
                       for x in calibration_batches(calib_split, calib_images, self.batch_size, calib_seed)]
        self.calib_images = sum(len(x) for x in self._calib)
        self._val = [(self._to_device_float(x), y.to(self.device))
                     for x, y in iterate_batches(val_split, None, self.batch_size, shuffle=False)]
        self.num_val = len(val_split)

    @classmethod
    def from_dataset(cls, supernet: Supernet, dataset: ImageDataset, **options: Any
                     ) -> "WeightInheritedEvaluator":
        """Use the dataset's ``calib`` and ``val`` splits and its normalisation."""
        return cls(supernet, dataset.split("calib"), dataset.split("val"),
                   mean=dataset.mean, std=dataset.std, **options)

    def _to_device_float(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = to_float(x_u8.to(self.device), self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self) -> ContextManager:
        return bf16_autocast(self.bf16, self.device)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        was_training = self.supernet.training
        try:
            return [self.evaluate_one(arch) for arch in archs]
        finally:
            self.supernet.train(was_training)

    def evaluate_one(self, arch: Arch) -> Metrics:
        """Recalibrate and validate one arch (leaves it active, in eval mode); ``eval_seconds``
        is this arch's own time (recalibration + validation)."""
        start = time.perf_counter()
        net = self.supernet
        arch = net.activate(arch)
        resolution = net.input_resolution(arch)
        with self._autocast():
            recalibrate_bn(net, (resize(x, resolution) for x in self._calib))
            net.eval()
            result = top1(net, ((resize(x, resolution), y) for x, y in self._val), with_loss=True)
        # the loss is continuous where accuracy counts images: it still orders subnets whose
        # accuracies tie within the validation split's resolution (an undertrained supernet)
        metrics: Metrics = {"accuracy": result.accuracy, "loss": result.loss}
        metrics.update({k: float(v) for k, v in net.space.cost(arch).items()})
        metrics["eval_seconds"] = time.perf_counter() - start
        return metrics

    def __reduce__(self):
        raise TypeError("WeightInheritedEvaluator holds a model and device tensors; create it "
                        "inside a pool actor (from a checkpoint) instead of pickling it")


def resolve_calib_images(available: int, images: Optional[int]) -> int:
    """The number of calibration images: ``images``, or all ``available`` when None."""
    if available == 0:
        raise ConfigError("the calib split is empty; BN recalibration needs images")
    wanted = available if images is None else images
    if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= available:
        raise ConfigError(f"calib_images={images!r} but the calib split has {available} images; pass "
                          f"1..{available} (or none for all of them)")
    return wanted


def calibration_batches(calib: Split, images: Optional[int], batch_size: int, seed: int = 0
                        ) -> List[torch.Tensor]:
    """The uint8 BN-calibration batches: the first ``images`` (default: all) of a shuffle of
    ``calib`` seeded by ``seed``, in ``ceil(images / batch_size)`` batches of near-equal size
    (recalibration averages batch statistics with equal weights)."""
    wanted = resolve_calib_images(len(calib), images)
    order = derive_rng(seed, "bn-calibration").permutation(len(calib))[:wanted]
    count = -(-wanted // int(batch_size))
    return [calib.take(torch.from_numpy(part)) for part in np.array_split(order, count)]


@dataclass(frozen=True)
class EvaluationSettings:
    """How a trained supernet's subnets are evaluated: the dataset (spec, split seed, loading
    options) and the BN calibration (images, batch). One definition serves the trainer's final
    report, the search pool and export, so all three print the same accuracy for an arch.

    ``calib_images`` None means the whole calibration split (digits: 250 images, CIFAR-10: 2,000,
    as OFA).
    """

    data: str
    seed: int = 0
    data_options: Dict[str, Any] = field(default_factory=dict)
    calib_images: Optional[int] = None
    batch_size: int = DEFAULT_EVAL_BATCH
    channels_last: bool = False

    @classmethod
    def for_checkpoint(cls, meta: Mapping[str, Any], *, data: Optional[str] = None,
                       seed: Optional[int] = None, calib_images: Optional[int] = None,
                       batch_size: Optional[int] = None) -> "EvaluationSettings":
        """The training run's own settings (its dataset, split seed, image size, calibration,
        memory format), each overridable. Another dataset spec drops the training run's loading
        options."""
        config = meta.get("config") or {}
        trained_on = meta.get("dataset") or config.get("data")
        spec = data or trained_on
        if not spec:
            raise CheckpointError("the checkpoint does not name its dataset; pass data=... (e.g. 'digits')")
        return cls(data=spec, seed=int(config.get("seed", 0) if seed is None else seed),
                   data_options=split_options(config.get("data_options")) if spec == trained_on else {},
                   calib_images=config.get("calib_images") if calib_images is None else calib_images,
                   batch_size=int(batch_size or config.get("eval_batch_size") or DEFAULT_EVAL_BATCH),
                   channels_last=bool(config.get("channels_last", False)))

    def load_dataset(self) -> ImageDataset:
        from raynas.data import load_dataset

        return load_dataset(self.data, seed=self.seed, **self.data_options)

    def to_dict(self, dataset: Optional[ImageDataset] = None) -> Dict[str, Any]:
        """JSON-able record; with the loaded ``dataset``, ``calib_images`` resolved to a count."""
        images = self.calib_images
        if dataset is not None:
            images = resolve_calib_images(len(dataset.split("calib")), images)
        return {"data": self.data, "seed": self.seed, "data_options": dict(self.data_options),
                "split": "val", "calib_images": images, "batch_size": self.batch_size,
                "channels_last": self.channels_last}


def split_options(options: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The :data:`SPLIT_OPTIONS` of a dataset-options mapping read from a file."""
    if not isinstance(options, Mapping):
        return {}
    return {k: options[k] for k in SPLIT_OPTIONS if options.get(k) is not None}
