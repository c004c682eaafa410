"""On-disk cache of decoded datasets: uint8 ``.npy`` arrays keyed by their source and options.

An entry is a directory of ``.npy`` files plus ``meta.json``. Each file is written atomically and
``meta.json`` last, so a reader that sees ``meta.json`` sees complete arrays; processes racing to
fill the same entry write identical bytes (decoding is deterministic), so whichever file wins is
right. An advisory lock keeps concurrent processes from decoding the same source twice.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np

from raynas.errors import DataError
from raynas.io import PathLike, atomic_path, atomic_write_json

#: bump when the decoded layout changes, so stale entries are ignored
CACHE_FORMAT = 1
META_FILE = "meta.json"


def default_cache_dir() -> Path:
    """``$RAYNAS_CACHE`` if set, else ``~/.cache/raynas``."""
    env = os.environ.get("RAYNAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "raynas"


def resolve_cache_dir(cache_dir: Optional[PathLike]) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def source_fingerprint(path: Path) -> Dict[str, Any]:
    """What identifies a source file's content cheaply: resolved path, size and mtime."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(kind: str, source: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    """Stable key of an entry: a hash of the source fingerprint, options and cache format."""
    blob = json.dumps({"kind": kind, "source": source, "options": options, "format": CACHE_FORMAT},
                      sort_keys=True, separators=(",", ":"))
    return f"{kind}-{hashlib.blake2b(blob.encode('utf-8'), digest_size=10).hexdigest()}"


def _make_readable(path: Path) -> None:
    """Temporary files are private (0600); a shared cache should be readable by others."""
    try:
        os.chmod(path, 0o644)
    except OSError:
        pass


class CacheEntry:
    """One cache directory holding named uint8/int64 arrays."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "datasets" / key

    def complete(self, names: Sequence[str]) -> bool:
        return (self.dir / META_FILE).is_file() and all((self.dir / f"{n}.npy").is_file() for n in names)

    def load(self, name: str, *, mmap: bool = False) -> np.ndarray:
        """Load one array; ``mmap`` maps it copy-on-write so it is writable (torch wants that)
        yet never changes the file and pages in lazily (larger-than-RAM sets)."""
        path = self.dir / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cached array {path} is unreadable ({exc}); delete {self.dir} "
                            "and load the dataset again to rebuild it") from exc

    def save(self, name: str, array: np.ndarray) -> None:
        with atomic_path(self.dir / f"{name}.npy", suffix=".npy") as tmp:
            np.save(tmp, array, allow_pickle=False)
            _make_readable(tmp)

    @contextlib.contextmanager
    def open_for_writing(self, name: str, shape: Sequence[int], dtype: Any) -> Iterator[np.ndarray]:
        """A memory-mapped array to fill row by row (no full copy in RAM); moved into place
        atomically when the block succeeds."""
        with atomic_path(self.dir / f"{name}.npy", suffix=".npy") as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
            try:
                yield array
                array.flush()
                _make_readable(tmp)
            finally:
                del array

    def commit(self, meta: Mapping[str, Any]) -> None:
        """Mark the entry complete (written after every array)."""
        atomic_write_json(self.dir / META_FILE, dict(meta))

    def read_meta(self) -> Dict[str, Any]:
        try:
            return json.loads((self.dir / META_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cache metadata {self.dir / META_FILE} is unreadable ({exc}); "
                            f"delete {self.dir} to rebuild it") from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Advisory exclusive lock so only one process decodes a source at a time (POSIX)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: atomic writes alone keep it correct
            yield
            return
        with open(self.dir / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
