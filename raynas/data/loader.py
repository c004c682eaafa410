"""``load_dataset(spec)``: read a source by spec string and carve seeded, stratified splits."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from raynas.data.cache import resolve_cache_dir
from raynas.data.dataset import ImageDataset, Split, channel_stats, labels_tensor
from raynas.data.raw import RawImages
from raynas.errors import DataError
from raynas.io import PathLike
from raynas.rng import derive_rng

DATASET_KINDS = {
    "digits": "digits — scikit-learn's 8x8 digits, embedded (no path)",
    "cifar10": "cifar10:<path> — torchvision's cifar-10-batches-py/ or cifar10_jpg.tar.gz",
    "imagefolder": "imagefolder:<path> — one subfolder of images per class",
}


def parse_spec(spec: str) -> Tuple[str, Optional[Path]]:
    """``"kind"`` or ``"kind:<path>"`` -> (kind, path or None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"a dataset spec is a non-empty string like 'digits' or 'cifar10:<path>', "
                        f"got {spec!r}")
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in DATASET_KINDS:
        raise DataError(f"unknown dataset kind '{kind}' in spec '{spec}'; use one of: "
                        + "; ".join(DATASET_KINDS.values()))
    path = Path(rest.strip()).expanduser() if rest.strip() else None
    if kind == "digits" and path is not None:
        raise DataError(f"'digits' takes no path (it ships inside scikit-learn), got spec '{spec}'")
    if kind != "digits" and path is None:
        raise DataError(f"dataset '{kind}' needs a path: {DATASET_KINDS[kind]}")
    return kind, path


def _read_source(kind: str, path: Optional[Path], cache_root: Path,
                 image_size: Optional[int]) -> RawImages:
    if kind == "digits":
        from raynas.data.digits import DIGITS_DEFAULT_SIZE, load_digits_raw

        return load_digits_raw(DIGITS_DEFAULT_SIZE if image_size is None else image_size)
    if kind == "cifar10":
        from raynas.data.cifar import load_cifar10_raw

        return load_cifar10_raw(path, cache_root, image_size)  # type: ignore[arg-type]
    from raynas.data.imagefolder import load_imagefolder_raw

    return load_imagefolder_raw(path, cache_root, image_size)  # type: ignore[arg-type]


def _make_split(images: np.ndarray, labels: np.ndarray, rows: Optional[np.ndarray], mapped: bool) -> Split:
    if rows is None:
        return Split(torch.from_numpy(images), labels_tensor(labels))
    if mapped:  # index lazily: copying a subset of a mapped store would load it into RAM
        return Split(torch.from_numpy(images), labels_tensor(labels[rows]), torch.from_numpy(rows))
    return Split(torch.from_numpy(np.ascontiguousarray(images[rows])), labels_tensor(labels[rows]))


def _check_stats(name: str, value: Optional[Sequence[float]]) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    values = tuple(float(v) for v in value)
    if len(values) != 3 or (name == "std" and min(values) <= 0):
        raise DataError(f"{name} must be three per-channel values" + (" > 0" if name == "std" else "")
                        + f", got {value!r}")
    return values


def load_dataset(spec: str, *, seed: int = 0, cache_dir: Optional[PathLike] = None,
                 image_size: Optional[int] = None, val_size: Optional[int] = None,
                 calib_size: Optional[int] = None, train_size: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None) -> ImageDataset:
    """Load a dataset by spec: ``digits``, ``cifar10:<path>`` or ``imagefolder:<path>``.

    ``val`` (size ``val_size``) and then ``calib`` (``calib_size``) are carved from the official
    training images, stratified by class, from a generator seeded by ``seed``; ``train`` gets the
    rest (or ``train_size`` of it). ``test`` is the official test set when the source has one.
    ``mean``/``std`` default to the dataset's standard values, else to statistics of ``train``.
    Decoded images are cached under ``cache_dir`` (default ``$RAYNAS_CACHE`` or ~/.cache/raynas).
    """
    kind, path = parse_spec(spec)
    mean_t, std_t = _check_stats("mean", mean), _check_stats("std", std)
    raw = _read_source(kind, path, resolve_cache_dir(cache_dir), image_size)
    sizes = {"val": raw.default_val if val_size is None else int(val_size),
             "calib": raw.default_calib if calib_size is None else int(calib_size)}
    indices = _stratified(raw.train_labels, sizes, seed, train_size, spec)
    splits: Dict[str, Split] = {
        name: _make_split(raw.train_images, raw.train_labels, indices[name], raw.mapped)
        for name in ("train", "calib", "val")}
    if raw.test_images is not None and raw.test_labels is not None:
        splits["test"] = _make_split(raw.test_images, raw.test_labels, None, raw.mapped)
    if mean_t is None or std_t is None:
        if raw.mean is not None and raw.std is not None:
            stats = (raw.mean, raw.std)
        else:
            stats = channel_stats(splits["train"].store if splits["train"].rows is None
                                  else _RowView(splits["train"]))
        mean_t, std_t = mean_t or stats[0], std_t or stats[1]
    return ImageDataset(spec=spec, num_classes=len(raw.class_names),
                        image_size=int(raw.train_images.shape[-1]),
                        mean=tuple(mean_t), std=tuple(std_t), splits=splits,  # type: ignore[arg-type]
                        class_names=raw.class_names, seed=int(seed), info=dict(raw.info),
                        source_indices=indices, hflip=raw.hflip)


def _stratified(labels: np.ndarray, sizes: Dict[str, int], seed: int,
                train_size: Optional[int], spec: str) -> Dict[str, np.ndarray]:
    from raynas.data.splits import stratified_split

    return stratified_split(labels, sizes, derive_rng(seed, "dataset-splits"), rest="train",
                            rest_size=train_size, source=f"dataset '{spec}'")


class _RowView:
    """Indexable view of a lazily indexed split, for :func:`channel_stats`."""

    def __init__(self, split: Split) -> None:
        self.split = split
        self.shape = (len(split),) + tuple(split.store.shape[1:])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, positions: torch.Tensor) -> torch.Tensor:
        return self.split.take(positions)


def describe_dataset_kinds() -> Dict[str, str]:
    """Spec kinds and what each expects (for CLI help)."""
    return dict(DATASET_KINDS)


