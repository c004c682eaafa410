"""The one fixed minibatch proxies score on: seeded training images of a dataset."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from raynas.errors import ConfigError
from raynas.proxies.registry import ProxyBatch


def dataset_minibatch(spec: str, batch_size: int = 64, *, seed: int = 0,
                      resolution: Optional[int] = None) -> Tuple[ProxyBatch, int]:
    """``batch_size`` training images of dataset ``spec`` (a seeded choice), normalised with
    the dataset's mean / std and resized to ``resolution`` if given; returns the batch and the
    dataset's number of classes."""
    from raynas.data import load_dataset, resize, to_float

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    dataset = load_dataset(spec, seed=seed)
    train = dataset.split("train")
    if len(train) < batch_size:
        raise ConfigError(f"dataset '{spec}' has {len(train)} training images, fewer than the batch "
                          f"size {batch_size}")
    positions = torch.from_numpy(np.random.default_rng(seed).choice(len(train), size=batch_size, replace=False))
    inputs = resize(to_float(train.take(positions), dataset.mean, dataset.std), resolution).contiguous()
    return ProxyBatch(inputs, train.labels[positions].clone()), int(dataset.num_classes)


__all__ = ["dataset_minibatch"]
