"""Which torch device a run uses, and the autocast it gets there.

One rule everywhere (trainer, DARTS, proxies, latency measurement): ``"auto"`` (or None) is CUDA
when this machine has it, else the CPU; a CUDA device asked for on a machine without CUDA is a
:class:`~raynas.errors.ConfigError` before any work starts, not a failure deep in a run.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ContextManager, Union

from raynas.errors import ConfigError

if TYPE_CHECKING:
    import torch

DeviceLike = Union[str, "torch.device", None]


def resolve_device(device: DeviceLike = "auto") -> "torch.device":
    """``"auto"``/None -> ``cuda`` if available else ``cpu``; anything else as ``torch.device``
    reads it, checked to exist here."""
    import torch  # raynas stays importable without loading torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r} ({exc}); use 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was asked for, but this machine has no CUDA GPU; "
                          "use 'cpu' or 'auto'")
    return dev


def bf16_autocast(enabled: bool, device: "torch.device") -> ContextManager:
    """bf16 autocast on CUDA when enabled; a no-op context elsewhere (CPU bf16 is slower)."""
    import torch

    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
