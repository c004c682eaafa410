"""Leave a model exactly as a proxy found it: weights, buffers, grads, dtypes and modes."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn


def _clone(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().clone()


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.device == b.device and a.shape == b.shape


class StateSnapshot:
    """A copy of a model's restorable state, taken once and restorable many times.

    Covers every parameter's values, dtype, device, ``requires_grad`` and ``.grad``; every
    buffer (BN running statistics included); and each submodule's train/eval flag. Values
    are copied back with one fused ``_foreach_copy_`` where layouts still match (the usual
    case), so restoring between proxies costs a few kernel launches, not one per tensor.
    """

    def __init__(self, model: nn.Module) -> None:
        self.params: List[Tuple[nn.Parameter, torch.Tensor, bool, Optional[torch.Tensor]]] = [
            (p, p.detach().clone(), p.requires_grad, _clone(p.grad)) for p in model.parameters()]
        self.buffers: List[Tuple[nn.Module, str, Optional[torch.Tensor]]] = [
            (m, name, _clone(b)) for m in model.modules() for name, b in m._buffers.items()]
        self.modes = [(m, m.training) for m in model.modules()]

    def restore(self) -> None:
        targets: List[torch.Tensor] = []
        sources: List[torch.Tensor] = []
        with torch.no_grad():
            for p, saved, requires_grad, grad in self.params:
                if _same_layout(p, saved):
                    targets.append(p.data)
                    sources.append(saved)
                else:  # e.g. synflow's float64 copy: put the original tensor layout back
                    p.data = saved.clone()
                if p.requires_grad is not requires_grad:
                    p.requires_grad_(requires_grad)
                if grad is not None or p.grad is not None:
                    p.grad = None if grad is None else grad.clone()
            for module, name, saved in self.buffers:
                current = module._buffers.get(name)
                if saved is not None and current is not None and _same_layout(current, saved):
                    targets.append(current)
                    sources.append(saved)
                else:
                    module._buffers[name] = None if saved is None else saved.clone()
            if targets:
                torch._foreach_copy_(targets, sources)
        for module, training in self.modes:
            if module.training is not training:  # nn.Module.__setattr__ is slow; most are unchanged
                module.training = training


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """Snapshot ``model`` and restore it on exit, whatever the block did to it.

    Proxies that change module attributes (forwards, BN flags) undo those themselves.
    """
    snapshot = StateSnapshot(model)
    try:
        yield model
    finally:
        snapshot.restore()
