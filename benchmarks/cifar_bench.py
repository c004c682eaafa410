"""Shared pieces of the CIFAR benchmarks: data on the device with augmentation, the isolated
training step, BN recalibration and accuracy.

These stand in for raynas's data module and shared supernet training loop until those are
merged; each is a plain function so a benchmark can swap it for the shared one.
"""
from __future__ import annotations

import io
import math
import platform
import tarfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.io import atomic_path

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
Arrays = Dict[str, Tuple[np.ndarray, np.ndarray]]


def default_data_path() -> Path:
    """``../shared/data/cifar10/cifar10_jpg.tar.gz`` relative to the project."""
    project = Path(__file__).resolve().parents[1]
    return project.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def load_cifar10_jpg(path: Path, cache_dir: Path) -> Arrays:
    """{"train", "test"} -> (uint8 NCHW images, int64 labels) from the JPG archive, cached."""
    cache = cache_dir / "cifar10_jpg_uint8.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test")}
    from PIL import Image

    images: Dict[str, list] = {"train": [], "test": []}
    labels: Dict[str, list] = {"train": [], "test": []}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in images:
                continue
            data = tar.extractfile(member).read()
            images[parts[0]].append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            labels[parts[0]].append(CIFAR_CLASSES.index(parts[1]))
    out = {s: (np.stack(images[s]).transpose(0, 3, 1, 2).copy(), np.asarray(labels[s], np.int64))
           for s in images}
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez(tmp, **{f"{s}_{k}": v for s, (x, y) in out.items()
                         for k, v in (("x", x), ("y", y))})
    return out


def synthetic_data(size: int, classes: int, seed: int) -> Arrays:
    """Class-coloured noise images: learnable in a few steps (smoke mode only)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 215, size=(classes, 3, 1, 1))
    out = {}
    for split, n in (("train", 640), ("test", 128)):
        y = rng.integers(0, classes, n)
        x = np.clip(colours[y] + rng.normal(0, 40, size=(n, 3, size, size)), 0, 255)
        out[split] = (x.astype(np.uint8), y.astype(np.int64))
    return out


class DeviceData:
    """uint8 images on the device; normalised batches with random crop (pad 4) and flip."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device) -> None:
        self.images = torch.from_numpy(images).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    def train_batches(self, batch: int, rng: np.random.Generator):
        order = torch.from_numpy(rng.permutation(len(self))).to(self.images.device)
        size = self.images.shape[-1]
        for start in range(0, len(self) - batch + 1, batch):
            idx = order[start:start + batch]
            x = F.pad(self.images[idx], (4, 4, 4, 4))
            offsets = torch.from_numpy(rng.integers(0, 9, size=(2, batch))).to(x.device)
            base = torch.arange(size, device=x.device)
            rows = (offsets[0][:, None] + base)[:, :, None]
            cols = (offsets[1][:, None] + base)[:, None, :]
            x = x[torch.arange(batch, device=x.device)[:, None, None], :, rows, cols]
            x = x.permute(0, 3, 1, 2)
            flip = torch.from_numpy(rng.random(batch) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            yield self._normalise(x), self.labels[idx]

    def eval_batches(self, batch: int):
        for start in range(0, len(self), batch):
            yield (self._normalise(self.images[start:start + batch]),
                   self.labels[start:start + batch])


def train_step(model: nn.Module, optimizers: List[torch.optim.Optimizer], images: torch.Tensor,
               labels: torch.Tensor, amp_dtype) -> torch.Tensor:
    """One step on one batch, every optimizer stepping (weights; α where trained)."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = F.cross_entropy(model(images), labels)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()
    return loss.detach()


def weight_optimizer(params, lr: float, total_steps: int):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(total_steps, 1))))
    return opt, schedule


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches) -> None:
    """Reset BN statistics and re-estimate them as a cumulative average over ``batches``."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for images, _ in batches:
        model(images)
    for bn, momentum in zip(layers, momenta):
        bn.momentum = momentum
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: DeviceData, batch: int, amp_dtype) -> float:
    model.eval()
    correct = 0
    for images, labels in data.eval_batches(batch):
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            correct += int((model(images).argmax(1) == labels).sum())
    return 100.0 * correct / len(data)


