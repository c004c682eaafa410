"""The canonical architecture form shared by every space, cache and result table.

An ``Arch`` is a plain JSON-able dict. Its canonical form has sorted keys, lists instead of
tuples and plain Python scalars; ``arch_id`` hashes the canonical JSON so the same
architecture gets the same id in every process and on every machine.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Dict

import numpy as np

Arch = Dict[str, Any]

ARCH_ID_LENGTH = 12


def canonical(value: Any) -> Any:
    """Return a canonical, JSON-able deep copy of ``value`` (dict keys must be strings)."""
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            if not isinstance(key, str):
                raise TypeError(f"arch keys must be strings, got {key!r} ({type(key).__name__})")
            out[key] = canonical(value[key])
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise TypeError(f"arch values must be finite numbers, got {f!r}")
        return f
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"arch values must be JSON scalars, lists or dicts, got {type(value).__name__}")


def canonical_json(arch: Arch) -> str:
    """Compact JSON of the canonical form: the string ``arch_id`` hashes."""
    return json.dumps(canonical(arch), sort_keys=True, separators=(",", ":"))


def arch_id(arch: Arch) -> str:
    """Short stable id of an architecture (hash of its canonical JSON)."""
    digest = hashlib.blake2b(canonical_json(arch).encode("utf-8"), digest_size=16).hexdigest()
    return digest[:ARCH_ID_LENGTH]


def arch_from_json(text: str) -> Arch:
    """Parse an arch serialised with :func:`canonical_json` (or any JSON object)."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"an arch must be a JSON object, got {type(value).__name__}")
    return canonical(value)
