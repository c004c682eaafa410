"""Seeded random generators. Every random choice in raynas takes one of these; nothing uses
the global RNG, so a (seed, step) pair reproduces the same choice in every process."""
from __future__ import annotations

import hashlib
from typing import Union

import numpy as np

Key = Union[int, str]


def _key_to_int(key: Key) -> int:
    if isinstance(key, (int, np.integer)):
        if key < 0:
            # SeedSequence needs non-negative entropy; fold negatives into a distinct range
            return int(-key) * 2 + 1 + (1 << 63)
        return int(key)
    digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def derive_rng(seed: int, *keys: Key) -> np.random.Generator:
    """A generator determined by ``seed`` and the keys (e.g. ``derive_rng(seed, step, k)``)."""
    return np.random.default_rng([_key_to_int(seed), *(_key_to_int(k) for k in keys)])


def as_rng(rng: "np.random.Generator | int | None") -> np.random.Generator:
    """Accept a Generator or an int seed; refuse None so no caller silently loses determinism."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError("pass a seeded numpy Generator or an int seed (raynas never uses the global RNG)")


def choice(rng: np.random.Generator, options):
    """Pick one element of a sequence, keeping its Python type (no numpy scalars)."""
    return options[int(rng.integers(len(options)))]
