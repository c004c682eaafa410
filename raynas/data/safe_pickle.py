"""A restricted unpickler for CIFAR's Python-pickle batches.

``pickle.load`` runs whatever callables a file names, so a tampered ``data_batch_1`` could run
code. This unpickler resolves only the globals a numpy array (and Python 3's protocol-2 bytes)
need and refuses every other one before anything is called.
"""
from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np

from raynas.errors import DataError


def _numpy_core(submodule: str, name: str) -> Callable[[], Any]:
    """numpy 2 moved ``numpy.core`` to ``numpy._core``; files name either."""
    def resolve() -> Any:
        for package in ("numpy._core", "numpy.core"):
            try:
                return getattr(importlib.import_module(f"{package}.{submodule}"), name)
            except (ImportError, AttributeError):
                continue
        raise AttributeError(f"numpy has no {submodule}.{name}")
    return resolve


_ALLOWED: Dict[Tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_core("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_core("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): _numpy_core("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): _numpy_core("numeric", "_frombuffer"),
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under protocol 2
    ("_codecs", "encode"): lambda: codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction globals."""

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        resolver = _ALLOWED.get((module, name))
        if resolver is None:
            raise DataError(
                f"{self.source} is not a plain CIFAR batch: its pickle asks for {module}.{name}, "
                "which raynas refuses to load (only numpy arrays, lists and dicts are allowed). "
                "Replace the file with the original CIFAR-10 python batches or use the JPG archive.")
        return resolver()


def load_restricted_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing nothing but numpy arrays and plain containers."""
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, source=str(path)).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError) as exc:
        raise DataError(f"{path} is truncated or not a CIFAR python batch ({type(exc).__name__}: "
                        f"{exc}); restore it from the original cifar-10-python.tar.gz") from exc
