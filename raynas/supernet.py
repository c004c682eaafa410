"""The ``Supernet`` base: one ``nn.Module`` holding the largest network of a space.

``activate(arch)`` selects a subnet (instance state only; nothing global), ``forward`` runs the
active subnet, and ``export(arch)`` returns a standalone static module whose eval-mode outputs
equal the active supernet's.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch.nn as nn

from raynas.arch import Arch


class Supernet(nn.Module, ABC):
    """Weight-sharing network of a search space."""

    def __init__(self, space) -> None:
        super().__init__()
        self.space = space
        self._active: Optional[Arch] = None

    @property
    def active_arch(self) -> Arch:
        if self._active is None:
            self.activate(self.space.largest())
        return self._active  # type: ignore[return-value]

    def activate(self, arch: Arch) -> Arch:
        """Validate ``arch`` and make it the subnet that ``forward`` runs; returns it canonical."""
        arch = self.space.validate(arch)
        self._apply_arch(arch)
        self._active = arch
        return arch

    @abstractmethod
    def _apply_arch(self, arch: Arch) -> None:
        """Configure the elastic layers for an already validated arch."""

    @abstractmethod
    def export(self, arch: Arch) -> nn.Module:
        """A static module with copies of the subnet's weights and BN statistics."""

    def input_resolution(self, arch: Optional[Arch] = None) -> Optional[int]:
        return self.space.input_resolution(arch if arch is not None else self.active_arch)
