"""The parts of the supernet training recipe outside the loop (``trainables/supernet.py``):
the distillation loss, the weight-decay parameter groups, and switching dropout off for the
subnets that train without it."""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Distillation loss: cross-entropy against the teacher's softened distribution (x T^2)."""
    t = float(temperature)
    target = F.softmax(teacher_logits.float() / t, dim=1)
    return -(target * F.log_softmax(logits.float() / t, dim=1)).sum(dim=1).mean() * (t * t)


def param_groups(params: List[Tuple[str, nn.Parameter]], weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on BN/LayerNorm parameters and biases (their scale carries no capacity)."""
    decay, no_decay = [], []
    for name, p in params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def dropout_modules(model: nn.Module) -> List[nn.Module]:
    """The dropout and drop-path modules of a model (what :func:`regularization` switches)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.dropout._DropoutNd) or type(m).__name__ == "DropPath"]


@contextlib.contextmanager
def regularization(modules: List[nn.Module], enabled: bool) -> Iterator[None]:
    """With ``enabled=False`` the given dropout / drop-path modules act as identities (BigNAS
    trains only the largest subnet with them); everything else keeps its mode."""
    switched = [] if enabled else [m for m in modules if m.training]
    for m in switched:
        m.training = False
    try:
        yield
    finally:
        for m in switched:
            m.training = True
