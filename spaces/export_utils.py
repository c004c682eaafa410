"""Building an exported module without paying for a random init that the copy overwrites."""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn as nn


def build_and_load(build: Callable[[], nn.Module], state_dict: Mapping[str, torch.Tensor],
                   like: torch.Tensor) -> nn.Module:
    """``build()`` the static module on the meta device, allocate it on ``like``'s device and
    dtype, and load ``state_dict`` strictly (every parameter and buffer must be given).

    Large models (AutoFormer-B) export in a fraction of the time a random init would take.
    """
    with torch.device("meta"):
        model = build()
    unsaved = set(name for name, _ in model.named_buffers()) - set(model.state_dict())
    if unsaved:  # non-persistent buffers hold computed constants: build them for real
        model = build()
    model = model.to_empty(device=like.device)
    if like.is_floating_point():
        model = model.to(dtype=like.dtype)
    model.load_state_dict(dict(state_dict), strict=True)
    return model
