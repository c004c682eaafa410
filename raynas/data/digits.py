"""scikit-learn's 8x8 handwritten digits (shipped inside scikit-learn: no download)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raynas.data.raw import RawImages
from raynas.errors import DataError

DIGITS_NATIVE_SIZE = 8
DIGITS_DEFAULT_SIZE = 32
# 1797 images -> ~1200 train / 250 calib / 347 val (no official test set)
DIGITS_VAL = 347
DIGITS_CALIB = 250


def _digits_arrays() -> "tuple[np.ndarray, np.ndarray]":
    """(images [1797, 8, 8] in 0..16, labels). Reads scikit-learn's bundled ``digits.csv.gz``
    directly when it is where scikit-learn keeps it: importing ``sklearn.datasets`` costs seconds
    in every process (each Ray actor), reading the 1797 rows does not."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            with gzip.open(csv, "rt") as handle:
                data = np.loadtxt(handle, delimiter=",", dtype=np.float64)
            if data.shape == (1797, 65):
                return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # the file moved: use the public API

    digits = load_digits()
    return np.asarray(digits.images), np.asarray(digits.target, dtype=np.int64)


def load_digits_raw(image_size: int = DIGITS_DEFAULT_SIZE) -> RawImages:
    """All 1797 digits as uint8 [N, 3, S, S]: values 0..16 scaled to 0..255, bilinearly
    upsampled to ``image_size`` and replicated to three channels (what RGB models expect)."""
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"digits image_size must be a positive int, got {image_size!r}")
    images, labels = _digits_arrays()
    x = torch.from_numpy(images.astype(np.float32))[:, None] * (255.0 / 16.0)
    if image_size != DIGITS_NATIVE_SIZE:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return RawImages(
        train_images=x.numpy(), train_labels=labels,
        class_names=tuple(str(i) for i in range(10)), default_val=DIGITS_VAL,
        default_calib=DIGITS_CALIB, info={"source": "scikit-learn digits"},
        hflip=False)  # a mirrored digit is another glyph (or none)
