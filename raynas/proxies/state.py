"""Leave a model exactly as a proxy found it: weights, buffers, grads, dtypes and modes."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn


def _clone(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().clone()


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """Snapshot ``model`` and restore it on exit, whatever the block did to it.

    Restores every parameter's values, dtype, device, ``requires_grad`` and ``.grad``; every
    buffer (BN running statistics included); and each submodule's train/eval flag. Proxies
    that change module attributes (forwards, BN flags) undo those themselves.
    """
    params: List[Tuple[nn.Parameter, torch.Tensor, bool, Optional[torch.Tensor]]] = [
        (p, p.detach().clone(), p.requires_grad, _clone(p.grad))
        for p in model.parameters(recurse=True)]
    buffers = [(m, name, _clone(b)) for m in model.modules() for name, b in m._buffers.items()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for p, saved, requires_grad, grad in params:
                if p.dtype == saved.dtype and p.device == saved.device and p.shape == saved.shape:
                    p.copy_(saved)
                else:
                    p.data = saved
                p.requires_grad_(requires_grad)
                p.grad = grad
            for module, name, saved in buffers:
                current = module._buffers.get(name)
                if (saved is not None and current is not None and current.dtype == saved.dtype
                        and current.device == saved.device and current.shape == saved.shape):
                    current.copy_(saved)
                else:
                    module._buffers[name] = saved
        for module, training in modes:
            module.training = training
