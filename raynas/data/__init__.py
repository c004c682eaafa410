"""Datasets by spec string (``digits``, ``cifar10:<path>``, ``imagefolder:<path>``) as in-memory
uint8 NCHW tensors with int64 labels, seeded splits, and tensor batching / transforms."""
from raynas.data.batches import iterate_batches
from raynas.data.cache import default_cache_dir
from raynas.data.dataset import SPLIT_NAMES, ImageDataset, Split
from raynas.data.loader import describe_dataset_kinds, load_dataset, parse_spec
from raynas.data.transforms import (apply_augment, augment, augment_params, cutout, cutout_at, draw_cutout,
                                    prepare_inputs, resize, to_float)

__all__ = [
    "ImageDataset", "Split", "SPLIT_NAMES", "load_dataset", "parse_spec", "describe_dataset_kinds",
    "default_cache_dir", "iterate_batches", "augment", "augment_params", "apply_augment", "to_float",
    "resize", "prepare_inputs", "cutout", "cutout_at", "draw_cutout",
]
