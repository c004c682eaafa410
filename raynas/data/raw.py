"""What a source reader returns before splitting: uint8 arrays, labels and dataset facts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass
class RawImages:
    """Decoded images of one source. ``train_*`` is the official training set (train, calib and
    val are carved from it); ``test_*`` the official test set if there is one. ``mapped`` marks
    memory-mapped arrays, which splits index lazily instead of copying. ``hflip``: whether a
    left-right mirrored image keeps its label (true of photos, false of digits and text), which
    decides whether training augmentation flips."""

    train_images: np.ndarray
    train_labels: np.ndarray
    class_names: Tuple[str, ...]
    default_val: int
    default_calib: int
    test_images: Optional[np.ndarray] = None
    test_labels: Optional[np.ndarray] = None
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    mapped: bool = False
    hflip: bool = True
    info: Dict[str, object] = field(default_factory=dict)
