"""Weight entanglement's one primitive: the leading slice of a full-size tensor."""
from __future__ import annotations

from typing import Optional

import torch


def leading(t: Optional[torch.Tensor], *sizes: int) -> Optional[torch.Tensor]:
    """The leading ``sizes`` slice of ``t`` (a view); ``t`` itself when that is all of it, so the
    full subnet pays no slicing op in the forward or backward pass. None stays None (a layer
    without a bias)."""
    if t is None or tuple(sizes) == tuple(t.shape[:len(sizes)]):
        return t
    index = tuple(slice(0, n) for n in sizes)
    return t[index]
