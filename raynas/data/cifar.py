"""CIFAR-10 from torchvision's python batches or from the JPG archive ``cifar10_jpg.tar.gz``."""
from __future__ import annotations

import dataclasses
import io
import re
import tarfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from raynas.data.cache import CacheEntry, cache_key, source_fingerprint
from raynas.data.raw import RawImages
from raynas.data.safe_pickle import load_restricted_pickle
from raynas.errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# per-channel statistics of the 50k training images (the values the literature uses)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_SIZE = 32
CIFAR10_VAL = 5000     # carved from the 50k training images, never seen by supernet training
CIFAR10_CALIB = 2000   # held-out training images for BN recalibration (OFA uses 2000)
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
ARCHIVE_NAME = "cifar10_jpg.tar.gz"
_MEMBER = re.compile(r"^(?:\./)?(?:[^/]+/)?(train|test)/([^/]+)/([^/]+\.jpe?g)$", re.IGNORECASE)
_CACHE_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def locate_cifar10(path: Path) -> Tuple[str, Path]:
    """``("batches", folder)`` or ``("jpg", archive)`` for a user-given path, or a DataError."""
    hint = (f"expected cifar-10-batches-py/ (torchvision layout: data_batch_1..5, test_batch) or "
            f"{ARCHIVE_NAME} under {path}")
    if not path.exists():
        raise DataError(f"cifar10 path {path} does not exist; pass cifar10:<folder> where the folder "
                        f"holds {BATCH_DIR}/ or {ARCHIVE_NAME}, or the archive itself")
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return "jpg", path
        raise DataError(f"cifar10 path {path} is a file but not a .tar.gz archive; {hint}")
    for folder in (path / BATCH_DIR, path):
        if (folder / TRAIN_BATCHES[0]).exists():
            return "batches", folder
    if (path / ARCHIVE_NAME).is_file():
        return "jpg", path / ARCHIVE_NAME
    raise DataError(f"no CIFAR-10 data found: {hint}")


def _read_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"CIFAR-10 batch {path} is missing; the folder must hold "
                        f"{', '.join(TRAIN_BATCHES)} and {TEST_BATCH}")
    batch = load_restricted_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR batch (a dict with 'data' and 'labels'), "
                        f"got {type(batch).__name__}")
    entries = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    data, labels = entries.get("data"), entries.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * CIFAR10_SIZE * CIFAR10_SIZE:
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072], got "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    labels_arr = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels_arr.shape != (len(data),) or (len(labels_arr) and
                                             (labels_arr.min() < 0 or labels_arr.max() > 9)):
        raise DataError(f"{path}: 'labels' must be {len(data)} ints in 0..9")
    return data.reshape(-1, 3, CIFAR10_SIZE, CIFAR10_SIZE), labels_arr


def load_cifar10_batches(folder: Path) -> RawImages:
    """The torchvision layout: pickled batches, read with a restricted unpickler."""
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    test_x, test_y = _read_batch(folder / TEST_BATCH)
    return RawImages(
        train_images=np.concatenate([p[0] for p in parts]),
        train_labels=np.concatenate([p[1] for p in parts]),
        test_images=np.ascontiguousarray(test_x), test_labels=test_y,
        class_names=CIFAR10_CLASSES, default_val=CIFAR10_VAL, default_calib=CIFAR10_CALIB,
        mean=CIFAR10_MEAN, std=CIFAR10_STD, info={"source": str(folder), "format": "batches"})


def _decode_archive(archive: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Decode every train/<class>/*.jpg and test/<class>/*.jpg, ordered by (class, file name),
    with a progress bar (once per archive: the result is cached; 60,000 JPEGs take from 20 s
    to minutes on a busy machine)."""
    import sys

    from PIL import Image
    from tqdm.auto import tqdm

    print(f"decoding {archive.name} once (cached under $RAYNAS_CACHE for later runs) ...", file=sys.stderr)
    members: Dict[str, List[Tuple[int, str, bytes]]] = {"train": [], "test": []}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _MEMBER.match(member.name)
                if not member.isfile() or match is None:
                    continue
                split, cls, name = match.groups()
                if cls not in CIFAR10_CLASSES:
                    raise DataError(f"{archive}: member {member.name} is in unknown class folder "
                                    f"'{cls}'; expected {', '.join(CIFAR10_CLASSES)}")
                handle = tar.extractfile(member)
                members[split].append((CIFAR10_CLASSES.index(cls), name, handle.read() if handle else b""))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"CIFAR-10 archive {archive} is corrupt or truncated ({exc}); "
                        f"copy {ARCHIVE_NAME} again") from exc
    if not members["train"] or not members["test"]:
        raise DataError(f"{archive} has no train/<class>/*.jpg or test/<class>/*.jpg members; "
                        f"expected the layout of {ARCHIVE_NAME}")
    out = {}
    bar = tqdm(total=sum(len(v) for v in members.values()), desc="decoding JPEGs", unit="img",
               file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    for split, items in members.items():
        items.sort(key=lambda t: (t[0], t[1]))
        images = np.empty((len(items), 3, CIFAR10_SIZE, CIFAR10_SIZE), dtype=np.uint8)
        for i, (_, name, blob) in enumerate(items):
            bar.update(1)
            try:
                with Image.open(io.BytesIO(blob)) as img:
                    pixels = np.asarray(img.convert("RGB"))
            except OSError as exc:
                raise DataError(f"{archive}: {split}/{CIFAR10_CLASSES[items[i][0]]}/{name} is not a "
                                f"readable JPEG ({exc}); copy {ARCHIVE_NAME} again") from exc
            if pixels.shape != (CIFAR10_SIZE, CIFAR10_SIZE, 3):
                raise DataError(f"{archive}: {split}/{name} is {pixels.shape[1]}x{pixels.shape[0]}, "
                                "CIFAR-10 images are 32x32")
            images[i] = pixels.transpose(2, 0, 1)
        out[split] = (images, np.array([t[0] for t in items], dtype=np.int64))
    bar.close()
    return out


def load_cifar10_jpg(archive: Path, cache_root: Path) -> RawImages:
    """The JPG archive, decoded once and cached as uint8 .npy under ``cache_root``."""
    try:
        fingerprint = source_fingerprint(archive)
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 archive {archive} ({exc})") from exc
    entry = CacheEntry(cache_root, cache_key("cifar10-jpg", fingerprint, {}))
    if not entry.complete(_CACHE_ARRAYS):
        with entry.lock():
            if not entry.complete(_CACHE_ARRAYS):  # another process may have filled it meanwhile
                decoded = _decode_archive(archive)
                for split, (images, labels) in decoded.items():
                    entry.save(f"{split}_images", images)
                    entry.save(f"{split}_labels", labels)
                entry.commit({"source": fingerprint, "classes": list(CIFAR10_CLASSES),
                              "sizes": {k: len(v[1]) for k, v in decoded.items()}})
    arrays = {name: entry.load(name) for name in _CACHE_ARRAYS}
    return RawImages(
        train_images=arrays["train_images"], train_labels=arrays["train_labels"],
        test_images=arrays["test_images"], test_labels=arrays["test_labels"],
        class_names=CIFAR10_CLASSES, default_val=CIFAR10_VAL, default_calib=CIFAR10_CALIB,
        mean=CIFAR10_MEAN, std=CIFAR10_STD,
        info={"source": str(archive), "format": "jpg", "cache": str(entry.dir)})


def load_cifar10_raw(path: Path, cache_root: Path, image_size: Optional[int] = None) -> RawImages:
    """The 32x32 images, or with ``image_size`` < 32 every image area-downsampled once (e.g. 16:
    CIFAR-10 at 16x16 for CPU-sized runs), held in memory."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 1 <= image_size <= CIFAR10_SIZE):
        raise DataError(f"cifar10 images are {CIFAR10_SIZE}x{CIFAR10_SIZE}: image_size can shrink them "
                        f"(an int from 1 to {CIFAR10_SIZE}), got {image_size!r}; to enlarge, resize at "
                        "batch time (raynas.data.resize, or the space's input resolution)")
    kind, where = locate_cifar10(path)
    raw = load_cifar10_batches(where) if kind == "batches" else load_cifar10_jpg(where, cache_root)
    if image_size is None or image_size == CIFAR10_SIZE:
        return raw
    from raynas.data.transforms import resize_uint8

    return dataclasses.replace(
        raw, train_images=resize_uint8(raw.train_images, image_size).numpy(),
        test_images=None if raw.test_images is None else resize_uint8(raw.test_images, image_size).numpy(),
        mapped=False, info={**raw.info, "resized_from": CIFAR10_SIZE})
