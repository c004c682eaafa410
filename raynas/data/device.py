"""A split held on one device and served an epoch at a time.

Every random draw of an epoch (order, crop offsets, flips, cutout centres) is made ahead on the
host from a seeded numpy generator and moved to the device in one copy, so the training loop
issues no host-to-device copy, and hence no synchronisation, per step.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from raynas.data.dataset import Split
from raynas.data.transforms import apply_augment, augment_params, cutout_at, draw_cutout, to_float
from raynas.errors import ConfigError


class DeviceSplit:
    """uint8 images and int64 labels of a split on ``device``, yielding normalised batches."""

    def __init__(self, split: Split, device: Union[str, torch.device], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)

    def __len__(self) -> int:
        return len(self.labels)

    def steps(self, batch_size: int) -> int:
        """Full batches per epoch."""
        return len(self) // int(batch_size)

    def epoch(self, batch_size: int, rng: np.random.Generator, *, steps: Optional[int] = None,
              augment: bool = True, pad: int = 4, flip: bool = True, cutout: int = 0
              ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """``steps`` shuffled full batches (default: all) of (normalised float images, labels)
        with random crop + flip and, if ``cutout`` > 0, cutout of that side after normalising."""
        batch_size = int(batch_size)
        available = self.steps(batch_size)
        steps = available if steps is None else int(steps)
        if batch_size < 1 or steps < 1 or steps > available:
            raise ConfigError(f"cannot draw {steps} batches of {batch_size} from {len(self)} images "
                              f"(at most {available} full batches)")
        n = steps * batch_size
        order = torch.from_numpy(rng.permutation(len(self))[:n]).to(self.device)
        if augment:
            top, left, flips = (torch.from_numpy(a).to(self.device)
                                for a in augment_params(rng, n, pad, flip))
        if cutout:
            h, w = self.images.shape[-2:]
            cy, cx = (torch.from_numpy(a).to(self.device) for a in draw_cutout(rng, n, h, w))
        for s in range(steps):
            part = slice(s * batch_size, (s + 1) * batch_size)
            idx = order[part]
            x = self.images.index_select(0, idx)
            if augment:
                x = apply_augment(x, top[part], left[part], flips[part], pad)
            x = to_float(x, self.mean, self.std)
            if cutout:
                x = cutout_at(x, cy[part], cx[part], cutout)
            yield x, self.labels.index_select(0, idx)

    def batches(self, batch_size: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in order, normalised, without augmentation (evaluation)."""
        for start in range(0, len(self), int(batch_size)):
            stop = min(start + int(batch_size), len(self))
            yield to_float(self.images[start:stop], self.mean, self.std), self.labels[start:stop]
