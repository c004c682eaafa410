"""Folders of class subfolders of images (torchvision's ImageFolder layout), decoded once into a
memory-mapped uint8 cache so sets larger than RAM load lazily.

``root/<class>/<image>`` is one labelled set (val and calib are carved from it). If ``root``
instead holds ``train/`` plus ``test/`` or ``val/`` (each with class subfolders), the second is
the official test split.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from raynas.data.cache import CacheEntry, cache_key
from raynas.data.raw import RawImages
from raynas.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm"})
IMAGEFOLDER_DEFAULT_SIZE = 64
VAL_FRACTION = 0.1
CALIB_FRACTION = 0.05
MAX_CALIB = 2000


def _class_dirs(root: Path) -> List[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _scan(root: Path, classes: Optional[Sequence[str]] = None) -> Tuple[Tuple[str, ...], List[Tuple[Path, int]]]:
    """Class names (sorted folder names) and (file, label) pairs in a fixed order."""
    dirs = _class_dirs(root)
    names = tuple(d.name for d in dirs)
    if classes is not None and names != tuple(classes):
        raise DataError(f"{root} has class folders {list(names)} but the training folder has "
                        f"{list(classes)}; both splits need the same classes")
    files: List[Tuple[Path, int]] = []
    for label, d in enumerate(dirs):
        images = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise DataError(f"class folder {d} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                            "remove it or add images")
        files.extend((f, label) for f in images)
    if not dirs:
        raise DataError(f"{root} has no class subfolders; imagefolder expects <root>/<class>/<image> "
                        "(or <root>/train/<class>/... with <root>/test/ or <root>/val/)")
    return names, files


def _layout(root: Path) -> Tuple[Path, Optional[Path]]:
    """(training folder, official test folder or None)."""
    sub = {p.name for p in _class_dirs(root)}
    if "train" in sub and sub <= {"train", "val", "test"} and len(sub) > 1:
        test = root / ("test" if "test" in sub else "val")
        return root / "train", test
    return root, None


def _fingerprint(root: Path, files: Sequence[Tuple[Path, int]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for f, label in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8"))
    return h.hexdigest()


def _decode_into(entry: CacheEntry, name: str, files: Sequence[Tuple[Path, int]], size: int) -> None:
    from PIL import Image, ImageOps

    with entry.open_for_writing(f"{name}_images", (len(files), 3, size, size), np.uint8) as out:
        for i, (path, _) in enumerate(files):
            try:
                with Image.open(path) as img:
                    # shorter side to `size`, centre crop: no aspect distortion
                    fitted = ImageOps.fit(img.convert("RGB"), (size, size),
                                          method=Image.Resampling.BILINEAR)
                    out[i] = np.asarray(fitted).transpose(2, 0, 1)
            except OSError as exc:
                raise DataError(f"image {path} is unreadable ({exc}); fix or remove it") from exc
    entry.save(f"{name}_labels", np.array([label for _, label in files], dtype=np.int64))


def default_sizes(n: int) -> Tuple[int, int]:
    """(val, calib) for a set of ``n`` labelled images: 10% and min(5%, 2000), at least 1 each."""
    val = max(1, round(VAL_FRACTION * n)) if n >= 3 else 0
    calib = max(1, min(MAX_CALIB, round(CALIB_FRACTION * n))) if n >= 3 else 0
    return val, calib


def load_imagefolder_raw(root: Path, cache_root: Path,
                         image_size: Optional[int] = None) -> RawImages:
    size = IMAGEFOLDER_DEFAULT_SIZE if image_size is None else image_size
    if not isinstance(size, int) or size < 1:
        raise DataError(f"imagefolder image_size must be a positive int, got {image_size!r}")
    if not root.is_dir():
        raise DataError(f"imagefolder path {root} is not a folder; pass imagefolder:<folder with "
                        "one subfolder of images per class>")
    train_dir, test_dir = _layout(root)
    classes, train_files = _scan(train_dir)
    test_files = _scan(test_dir, classes)[1] if test_dir is not None else []
    source = {"path": str(root.resolve()),
              "train": _fingerprint(train_dir, train_files),
              "test": _fingerprint(test_dir, test_files) if test_dir is not None else None}
    entry = CacheEntry(cache_root, cache_key("imagefolder", source, {"image_size": size}))
    arrays = ["train_images", "train_labels"] + (["test_images", "test_labels"] if test_files else [])
    if not entry.complete(arrays):
        with entry.lock():
            if not entry.complete(arrays):
                _decode_into(entry, "train", train_files, size)
                if test_files:
                    _decode_into(entry, "test", test_files, size)
                entry.commit({"source": source, "classes": list(classes), "image_size": size})
    val, calib = default_sizes(len(train_files))
    return RawImages(
        train_images=entry.load("train_images", mmap=True), train_labels=entry.load("train_labels"),
        test_images=entry.load("test_images", mmap=True) if test_files else None,
        test_labels=entry.load("test_labels") if test_files else None,
        class_names=classes, default_val=val, default_calib=calib, mapped=True,
        info={"source": str(root), "format": "imagefolder", "cache": str(entry.dir)})
