"""Weight entanglement's one primitive: the leading slice of a full-size tensor."""
from __future__ import annotations

import torch


def leading(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """The leading ``sizes`` slice of ``t``; ``t`` itself when that is all of it, so the full
    subnet pays no slicing op in the forward or backward pass."""
    if tuple(sizes) == tuple(t.shape[:len(sizes)]):
        return t
    index = tuple(slice(0, n) for n in sizes)
    return t[index]
