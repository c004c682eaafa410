"""Weight-inherited accuracy: a subnet's top-1 with the supernet's shared weights after BN
recalibration, plus its analytic cost.

This evaluator holds the model, so it runs in-process (inside a pool actor); search trials reach
it through the pool, never by pickling it.
"""
from __future__ import annotations

import time

from typing import Any, ContextManager, List, Optional, Sequence, Tuple, Union

import torch

from raynas.accuracy import top1
from raynas.arch import Arch
from raynas.bn import recalibrate_bn
from raynas.data.batches import iterate_batches
from raynas.data.dataset import ImageDataset, Split
from raynas.data.transforms import resize, to_float
from raynas.device import bf16_autocast
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator, Metrics
from raynas.rng import derive_rng
from raynas.supernet import Supernet

SplitLike = Union[Split, Tuple[torch.Tensor, torch.Tensor]]


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
    when it is not None; BN statistics recalibrated on the first ``calib_batches`` batches of
    ``calib`` (a fixed seeded order, the same batches for every arch, so results do not depend on
    evaluation order); accuracy over all of ``val`` in eval mode. Calibration and validation
    images are normalised and moved to ``device`` once, at construction.
    """

    metrics = ("accuracy", "loss", "params", "macs", "flops")

    def __init__(self, supernet: Supernet, calib: SplitLike, val: SplitLike, *,
                 calib_batches: Optional[int] = None, batch_size: int = 256,
                 device: Union[str, torch.device] = "cpu", mean: Sequence[float],
                 std: Sequence[float], bf16: bool = False, calib_seed: int = 0) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.bf16 = bool(bf16) and self.device.type == "cuda"
        self.supernet = supernet.to(self.device)
        calib_split, val_split = _as_split(calib, "calib"), _as_split(val, "val")
        if len(val_split) == 0:
            raise ConfigError("the val split is empty; weight-inherited accuracy needs images")
        self._calib = self._calibration_batches(calib_split, calib_batches, calib_seed)
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
        return to_float(x_u8.to(self.device), self.mean, self.std)

    def _calibration_batches(self, calib: Split, calib_batches: Optional[int],
                             seed: int) -> List[torch.Tensor]:
        available = len(calib) // self.batch_size
        if available == 0:
            if len(calib) == 0:
                raise ConfigError("the calib split is empty; BN recalibration needs images")
            available, size = 1, len(calib)  # fewer images than one batch: use them all at once
        else:
            size = self.batch_size
        wanted = available if calib_batches is None else int(calib_batches)
        if not 1 <= wanted <= available:
            raise ConfigError(f"calib_batches={calib_batches} but the calib split ({len(calib)} "
                              f"images) gives {available} batches of {size}; pass calib_batches "
                              f"<= {available} or a smaller batch_size")
        batches = iterate_batches(calib, None, size, rng=derive_rng(seed, "bn-calibration"),
                                  shuffle=True, drop_last=True)
        return [self._to_device_float(x) for _, (x, _) in zip(range(wanted), batches)]

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
