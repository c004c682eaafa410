"""``ImageDataset``: named splits of uint8 NCHW images with int64 labels, plus normalisation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from raynas.errors import DataError

SPLIT_NAMES = ("train", "calib", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split. ``store`` holds uint8 images [N, C, H, W]; when ``rows`` is set the split is the
    rows ``store[rows]`` of a shared (possibly memory-mapped) store, read batch by batch so a
    larger-than-RAM set is never copied whole."""

    store: torch.Tensor
    labels: torch.Tensor
    rows: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.store.dtype != torch.uint8 or self.store.dim() != 4:
            raise DataError(f"split images must be uint8 [N, C, H, W], got {self.store.dtype} "
                            f"{tuple(self.store.shape)}")
        n = len(self.rows) if self.rows is not None else len(self.store)
        if self.labels.dtype != torch.int64 or self.labels.shape != (n,):
            raise DataError(f"split labels must be int64 [{n}], got {self.labels.dtype} "
                            f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> torch.Tensor:
        """All images of the split (a copy when the split is a subset of a shared store)."""
        return self.store if self.rows is None else self.store.index_select(0, self.rows)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return tuple(self.store.shape[1:])  # type: ignore[return-value]

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """Images at ``positions`` (0..len-1) of this split."""
        rows = positions if self.rows is None else self.rows.index_select(0, positions.to(self.rows.device))
        # index_select is ~20x faster than advanced indexing for row gathers on CPU
        return self.store.index_select(0, rows.to(self.store.device))

    def materialize(self) -> "Split":
        """A self-contained in-memory copy (cheap to pickle: no shared or mapped store)."""
        return Split(self.images.clone(memory_format=torch.contiguous_format), self.labels.clone())

    def to(self, device) -> "Split":
        """The split moved to ``device`` (e.g. the whole uint8 training set onto a GPU, so batches
        are gathered there); a subset of a shared store is gathered first."""
        if self.rows is not None:
            return Split(self.images.to(device), self.labels.to(device))
        return Split(self.store.to(device), self.labels.to(device))

    def batches(self, batch_size: int, *, rng=None, shuffle: bool = False, drop_last: bool = False,
                device=None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Batches of (uint8 images, labels); see :func:`raynas.data.iterate_batches`."""
        from raynas.data.batches import iterate_batches

        return iterate_batches(self, None, batch_size, rng=rng, shuffle=shuffle,
                               drop_last=drop_last, device=device)


@dataclass
class ImageDataset:
    """A dataset loaded by :func:`raynas.data.load_dataset`.

    ``train`` is what supernet training may see; ``calib`` held-out training images for BN
    recalibration; ``val`` a validation split carved from the training set that training never
    sees; ``test`` the official test set when the source has one.
    """

    spec: str
    num_classes: int
    image_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    splits: Dict[str, Split]
    class_names: Tuple[str, ...] = ()
    seed: int = 0
    info: Dict[str, object] = field(default_factory=dict)
    #: positions of each carved split in the official training set (provenance, disjointness)
    source_indices: Dict[str, np.ndarray] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"dataset '{self.spec}' has no '{name}' split; it has "
                            f"{', '.join(self.splits)}")
        return self.splits[name]

    def __getitem__(self, name: str) -> Split:
        return self.split(name)

    @property
    def sizes(self) -> Dict[str, int]:
        return {name: len(s) for name, s in self.splits.items()}

    def eval_splits(self, val_size: Optional[int] = None) -> "ImageDataset":
        """Only ``calib`` and ``val``, as self-contained in-memory tensors: what evaluation actors
        need, small enough to put in Ray's object store once.

        ``val_size`` keeps a subset of that many validation images (a choice seeded by the
        dataset's seed, in split order): cheaper evaluations, noisier accuracies."""
        names = ("calib", "val")
        splits = {name: self.split(name).materialize() for name in names}
        indices = {name: self.source_indices[name] for name in names if name in self.source_indices}
        if val_size is not None:
            val = splits["val"]
            if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 < val_size <= len(val):
                raise DataError(f"val_size must be an integer in 1..{len(val)} (the validation split of "
                                f"'{self.spec}'), got {val_size!r}")
            keep = np.sort(np.random.default_rng([int(self.seed), 7919]).choice(len(val), val_size, replace=False))
            rows = torch.from_numpy(keep)
            splits["val"] = Split(val.store.index_select(0, rows), val.labels.index_select(0, rows))
            if "val" in indices:
                indices["val"] = np.asarray(indices["val"])[keep]
        return ImageDataset(self.spec, self.num_classes, self.image_size, self.mean, self.std,
                            splits, self.class_names, self.seed, dict(self.info), indices)

    def resized(self, size: int, chunk: int = 4096) -> "ImageDataset":
        """Every split's images resized once to ``size`` x ``size`` (area averaging when
        downsampling, e.g. 32 -> 16 CIFAR-10 for CPU-sized searches), still uint8 in memory; the
        same splits, labels and normalisation. ``self`` when the size already matches."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DataError(f"image size must be a positive int, got {size!r}")
        if size == self.image_size:
            return self
        from raynas.data.transforms import resize_uint8

        splits = {name: Split(resize_uint8(split.images, size, chunk), split.labels.clone())
                  for name, split in self.splits.items()}
        info = {**self.info, "resized_from": self.image_size}
        return ImageDataset(self.spec, self.num_classes, size, self.mean, self.std, splits,
                            self.class_names, self.seed, info, dict(self.source_indices))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return (f"ImageDataset('{self.spec}', classes={self.num_classes}, "
                f"size={self.image_size}, {sizes})")


def labels_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def channel_stats(images: torch.Tensor, *, max_images: int = 10_000,
                  chunk: int = 1024) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units over up to ``max_images`` evenly spaced images,
    read in chunks so a memory-mapped store is never loaded whole."""
    n = len(images)
    if n == 0:
        raise DataError("cannot compute normalisation statistics of an empty split")
    picks = np.unique(np.linspace(0, n - 1, num=min(n, max_images)).round().astype(np.int64))
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for start in range(0, len(picks), chunk):
        x = images[torch.from_numpy(picks[start:start + chunk])].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)
