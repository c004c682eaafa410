"""Build latency lookup tables for a space by timing each of its operators on this device.

The operators are the distinct ``space.layer_descriptors(arch)`` keys over seeded random archs
(sampled until ``patience`` archs in a row bring no new key, plus the smallest and largest);
``space.build_layer(key)`` turns each key into a module and its input shape. The tables are
written in Once-for-All's format, one file per input resolution, so :class:`LatencyLUT` reads
them like the published ones. Timing uses the local device: the CPU here, a GPU on a GPU node.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.hardware.lut import TABLE_PATTERN, Entry, LatencyTable, PathLike
from raynas.hardware.measure import resolve_device, time_module

LayerBuilder = Callable[[str], Tuple[Any, Tuple[int, ...]]]


def collect_descriptors(space, archs: Optional[Iterable[Arch]] = None, *, rng: Optional[np.random.Generator] = None,
                        max_samples: int = 5000, patience: int = 500) -> Dict[Optional[int], List[str]]:
    """Input resolution -> sorted distinct operator keys of the space (or of ``archs``)."""
    if not callable(getattr(space, "layer_descriptors", None)):
        raise ConfigError(f"space '{space.name}' does not name its operators (no layer_descriptors(arch))")
    found: Dict[Optional[int], Set[str]] = {}

    def add(arch: Arch) -> bool:
        keys = found.setdefault(space.input_resolution(arch), set())
        before = len(keys)
        keys.update(space.layer_descriptors(arch))
        return len(keys) > before

    if archs is not None:
        for arch in archs:
            add(arch)
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        add(space.smallest())
        add(space.largest())
        quiet = 0
        for _ in range(max_samples):
            quiet = 0 if add(space.sample(rng)) else quiet + 1
            if quiet >= patience:
                break
    return {res: sorted(keys) for res, keys in found.items()}


def build_latency_tables(space, out_dir: PathLike, *, device: str = "cpu", warmup: int = 5, repeats: int = 20,
                         layer_builder: Optional[LayerBuilder] = None, archs: Optional[Iterable[Arch]] = None,
                         resolutions: Optional[Iterable[int]] = None, seed: int = 0,
                         budget_seconds: Optional[float] = None, threads: Optional[int] = 1,
                         log: Optional[Callable[[str], None]] = None,
                         progress: bool = False) -> Dict[Optional[int], Path]:
    """Time every operator of ``space`` on ``device`` and write ``<res>_lookup_table.yaml`` files.

    ``resolutions`` limits the tables written; ``budget_seconds`` stops timing (raising) when a
    build would overrun; ``threads`` fixes torch's CPU threads while timing (None: as set);
    ``progress`` shows a bar over the operators; returns resolution -> written path.
    """
    builder = layer_builder or getattr(space, "build_layer", None)
    if not callable(builder):
        raise ConfigError(f"space '{space.name}' cannot build single operators (no build_layer(key)); "
                          "pass layer_builder=key -> (module, input_shape)")
    dev = resolve_device(device)
    groups = collect_descriptors(space, archs, rng=np.random.default_rng(seed))
    if resolutions is not None:
        wanted = {int(r) for r in resolutions}
        unknown = wanted - {r for r in groups if r is not None}
        if unknown:
            raise ConfigError(f"resolutions {sorted(unknown)} are not input resolutions of space "
                              f"'{space.name}' (it has {sorted(r for r in groups if r is not None)})")
        groups = {r: keys for r, keys in groups.items() if r in wanted}
    out = Path(out_dir)
    start = time.monotonic()
    written: Dict[Optional[int], Path] = {}
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm
        bar = tqdm(total=sum(len(k) for k in groups.values()), desc="timing operators", unit="op",
                   file=sys.stderr, dynamic_ncols=True)
    for res, keys in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        entries: Dict[str, Entry] = {}
        for key in keys:
            if bar is not None:
                bar.update(1)
            if budget_seconds is not None and time.monotonic() - start > budget_seconds:
                raise ConfigError(f"building the latency tables ran past budget_seconds={budget_seconds} "
                                  f"({len(entries)} of {len(keys)} operators at resolution {res} timed)")
            module, shape = builder(key)
            timing = time_module(module, shape, dev, warmup=warmup, repeats=repeats, seed=seed, threads=threads)
            entries[key] = Entry(timing.mean_ms, timing.std_ms, timing.count)
        name = TABLE_PATTERN.format(resolution=res) if res is not None else "lookup_table.yaml"
        written[res] = LatencyTable(entries, str(out / name)).save(out / name)
        if log is not None:
            log(f"resolution {res}: {len(entries)} operators -> {written[res]}")
    if bar is not None:
        bar.close()
    return written
