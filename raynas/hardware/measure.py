"""Wall-clock latency of a module on a device: warm-up runs, then timed runs at batch 1 (or the
given shape), synchronising CUDA so the time is the kernels', not the launch queue's."""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple

from raynas.device import resolve_device
from raynas.errors import ConfigError


@dataclass(frozen=True)
class Timing:
    mean_ms: float
    std_ms: float
    count: int
    median_ms: float


@contextlib.contextmanager
def cpu_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (None: leave torch's setting).

    Latency depends on the thread count, and on a shared or busy machine torch's default (all
    cores) spends most of each small op waiting for its threads: fix it for comparable tables.
    """
    import torch

    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_module(module, input_shape: Sequence[int], device="cpu", warmup: int = 5, repeats: int = 20,
                seed: int = 0, threads: Optional[int] = 1) -> Timing:
    """Time ``module(x)`` for a random ``x`` of ``input_shape`` in eval mode without gradients,
    with ``threads`` CPU threads (None: torch's current setting)."""
    import torch

    if warmup < 0 or repeats < 1:
        raise ConfigError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    dev = resolve_device(device)
    module = module.to(dev).eval()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    x = torch.randn(tuple(input_shape), generator=gen).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    with cpu_threads(threads), torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            module(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    std = statistics.stdev(times) if len(times) > 1 else 0.0
    return Timing(statistics.fmean(times), std, len(times), statistics.median(times))


def input_shape_for(space, arch, batch_size: int = 1, channels: int = 3) -> Tuple[int, ...]:
    """(batch, channels, res, res) of the input ``arch`` expects (32 when the space does not say)."""
    res = space.input_resolution(arch) or 32
    return (int(batch_size), int(channels), int(res), int(res))
