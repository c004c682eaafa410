"""Mini-batches straight from in-memory tensors (no DataLoader: the data are small tensors)."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple, Union

import numpy as np
import torch

from raynas.data.dataset import Split
from raynas.rng import as_rng


def iterate_batches(images_u8: Union[torch.Tensor, Split], labels: Optional[torch.Tensor],
                    batch_size: int, *, rng: Union[np.random.Generator, int, None] = None,
                    shuffle: bool = True, drop_last: bool = False,
                    device: Union[str, torch.device, None] = None
                    ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 images, int64 labels)`` batches, moved to ``device``.

    ``images_u8`` is a uint8 [N, C, H, W] tensor with its ``labels``, or a :class:`Split`
    (``labels`` None). With ``shuffle`` the order is a permutation drawn from ``rng`` (required),
    so the same seed gives the same batches everywhere.
    """
    split = images_u8 if isinstance(images_u8, Split) else Split(images_u8, labels)  # type: ignore[arg-type]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    order = torch.from_numpy(as_rng(rng).permutation(n)) if shuffle else None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_last and stop - start < batch_size:
            break
        if order is None and split.rows is None:
            x, y = split.store[start:stop], split.labels[start:stop]
        else:
            positions = order[start:stop] if order is not None else torch.arange(start, stop)
            x, y = split.take(positions), split.labels.index_select(0, positions.to(split.labels.device))
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield x, y
