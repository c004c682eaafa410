"""The ``Supernet`` base: one ``nn.Module`` holding the largest network of a space.

``activate(arch)`` selects a subnet (instance state only; nothing global), ``forward`` runs the
active subnet, and ``export(arch)`` returns a standalone static module whose eval-mode outputs
equal the active supernet's.

Besides those, the base declares every optional capability supernet training uses
(``trainables/supernet.py`` calls them and probes nothing), each with a default that says "this
supernet has none": architecture parameters trained next to the weights (hybrid), channel
sorting (OFA), few-shot splitting (NB201), per-step op draws and training modes (hybrid). A
family overrides what it has. :class:`FixedArchSupernet` presents one static model the same way,
so a standalone run trains through the same loop.
"""
from __future__ import annotations

import contextlib
import copy
from abc import ABC, abstractmethod
from typing import Any, Dict, Iterator, List, Optional

import torch
import torch.nn as nn

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError


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

    # ------------------------------------------------------------------ rebuilding
    @property
    def build_options(self) -> Optional[Dict[str, Any]]:
        """Keyword arguments of ``space.build_supernet`` that rebuild this supernet (written into
        checkpoints); None: the options it was built with do (the caller records those)."""
        return None

    # ------------------------------------------------------------------ architecture parameters
    def alpha_parameters(self) -> List[nn.Parameter]:
        """Architecture parameters trained next to the weights; the trainer gives them their own
        optimizer (Adam) and keeps them out of weight decay and gradient clipping. Default: none."""
        return []

    def alpha_values(self) -> List[float]:
        """The architecture parameters as plain numbers, logged once per epoch (empty: none)."""
        return []

    def derive_arch(self) -> Optional[Arch]:
        """The arch the architecture parameters select, whose accuracy the trainer reports as
        ``derived_accuracy``; None when the supernet has no architecture parameters."""
        return None

    # ------------------------------------------------------------------ channel sorting (OFA)
    @property
    def supports_channel_sorting(self) -> bool:
        """Whether :meth:`sort_channels` exists; a phase with ``sort_channels: "auto"`` sorts
        exactly when this is True."""
        return False

    @property
    def num_width_phases(self) -> int:
        """How many width phases :meth:`sort_channels` tells apart; the trainer's n-th sort uses
        phase ``min(n, num_width_phases - 1)`` (OFA: one per expand ratio)."""
        return 1

    def sort_channels(self, *, width_phase: int = 0) -> None:
        """Reorder channels by importance without changing the largest network's function, so
        the narrower widths of the next phase start from the most important channels."""
        raise ConfigError(f"the supernet of space '{self.space.name}' ({type(self).__name__}) cannot "
                          "sort channels; drop sort_channels from the training phases")

    # ------------------------------------------------------------------ few-shot splitting (NB201)
    @property
    def can_split(self) -> bool:
        """Whether :meth:`split` exists; the trainer refuses a splitting sampler up front if not."""
        return False

    def split(self) -> bool:
        """Few-shot: copy the shared weights into sub-supernets; False when already split."""
        raise ConfigError(f"the supernet of space '{self.space.name}' ({type(self).__name__}) cannot "
                          "split into sub-supernets; use a sampler without a few-shot phase")

    # ------------------------------------------------------------------ per-step state (hybrid)
    def set_step(self, step: int) -> None:
        """Called before every training step on every rank: a supernet that draws its own
        randomness derives it from the step here, so ranks agree and resumed runs repeat."""

    def last_forward_ops(self) -> List[str]:
        """The op each layer ran in the last forward where the supernet chooses ops itself; the
        trainer writes them into the subnet log. Empty: the activated arch says everything."""
        return []

    @contextlib.contextmanager
    def arch_mode(self) -> Iterator[None]:
        """Within the block ``forward`` runs exactly the activated arch (for evaluation), even if
        the supernet trains in a mode that mixes or draws ops; restored after. Default: always."""
        yield


def frozen_teacher(model: Supernet, arch: Arch) -> Supernet:
    """A teacher for distillation: a frozen copy of ``model`` (a :class:`Supernet`, always) with
    ``arch`` (its largest subnet) active, in eval mode, taking no gradients."""
    teacher = copy.deepcopy(model)
    teacher.activate(arch)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class FixedArchSupernet(Supernet):
    """One static model of ``arch`` seen as a supernet of that arch alone, so standalone runs
    train through the supernet loop: ``activate`` accepts only ``arch``, ``forward`` runs the
    model and ``export`` copies it."""

    def __init__(self, space, arch: Arch, model: nn.Module) -> None:
        super().__init__(space)
        self.arch = space.validate(arch)
        self.model = model
        self._active = self.arch

    def _apply_arch(self, arch: Arch) -> None:
        if arch != self.arch:
            raise ConfigError(f"this standalone model is arch {arch_id(self.arch)}; it cannot run "
                              f"{arch_id(arch)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def export(self, arch: Arch) -> nn.Module:
        self.activate(arch)
        return copy.deepcopy(self.model)
