"""Training phases and the learning-rate schedule inside each.

A run is a list of :class:`Phase` (one for most strategies; OFA progressive shrinking declares
several). Each phase has its own length, peak learning rate and warm-up, and flags the trainer
acts on when the phase starts: build a fixed distillation teacher from the current supernet,
sort channels (OFA width phases), split the supernet into sub-supernets (few-shot), start a
fresh optimizer. The schedule is a pure function of the
global step, so a resumed run lands on the same phase and learning rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from raynas.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    """One stretch of training with its own learning-rate curve.

    ``options`` carries what the sampling strategy needs in this phase (e.g. the unlocked
    dimensions); the trainer does not read it.
    """

    name: str
    epochs: float
    lr: float
    warmup_epochs: float = 0.0
    fixed_teacher: bool = False
    sort_channels: Union[bool, str] = False   # "auto": when the supernet can sort
    reset_optimizer: bool = False
    split_supernet: bool = False              # few-shot: the supernet splits into sub-supernets
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a phase needs a non-empty name, got {self.name!r}")
        for key in ("epochs", "lr"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"phase '{self.name}': '{key}' must be a positive number, got {value!r}")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, (int, float)) \
                or self.warmup_epochs < 0:
            raise ConfigError(f"phase '{self.name}': 'warmup_epochs' must be >= 0, got {self.warmup_epochs!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "epochs": self.epochs, "lr": self.lr,
                "warmup_epochs": self.warmup_epochs, "fixed_teacher": self.fixed_teacher,
                "sort_channels": self.sort_channels, "reset_optimizer": self.reset_optimizer,
                "split_supernet": self.split_supernet, "options": dict(self.options)}


@dataclass(frozen=True)
class PhasePlan:
    """Phases laid out on the global step axis."""

    phases: Tuple[Phase, ...]
    starts: Tuple[int, ...]
    lengths: Tuple[int, ...]
    steps_per_epoch: int

    @classmethod
    def build(cls, phases: Sequence[Phase], steps_per_epoch: int) -> "PhasePlan":
        if not phases:
            raise ConfigError("a training schedule needs at least one phase")
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"phase names must be unique, got {names}")
        lengths = tuple(max(1, int(round(p.epochs * steps_per_epoch))) for p in phases)
        starts, total = [], 0
        for n in lengths:
            starts.append(total)
            total += n
        return cls(tuple(phases), tuple(starts), lengths, int(steps_per_epoch))

    @property
    def total_steps(self) -> int:
        return self.starts[-1] + self.lengths[-1]

    def index(self, step: int) -> int:
        """Index of the phase that global step ``step`` belongs to (the last one past the end)."""
        for i in range(len(self.phases) - 1, -1, -1):
            if step >= self.starts[i]:
                return i
        return 0

    def phase(self, step: int) -> Phase:
        return self.phases[self.index(step)]

    def learning_rate(self, step: int) -> float:
        """Linear warm-up then cosine decay to zero, inside the step's phase.

        Kept as a closed form of the global step rather than ``torch.optim.lr_scheduler``
        objects: every phase (OFA's progressive shrinking has up to six) restarts with its own
        peak and warm-up, and a resumed or data-parallel run gets the exact rate of any step
        from the step alone, with no scheduler state to checkpoint (torch's
        ``CosineAnnealingLR`` steps recursively from the previous rate, and chaining per-phase
        schedulers needs ``SequentialLR`` state restored in the same order)."""
        i = self.index(step)
        phase, local, length = self.phases[i], step - self.starts[i], self.lengths[i]
        warmup = min(int(phase.warmup_epochs * self.steps_per_epoch), length - 1)
        if local < warmup:
            return phase.lr * (local + 1) / warmup
        progress = (local - warmup) / max(1, length - warmup)
        return 0.5 * phase.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def describe(self) -> List[Dict[str, Any]]:
        return [{**p.to_dict(), "start_step": s, "steps": n}
                for p, s, n in zip(self.phases, self.starts, self.lengths)]


def single_phase(epochs: float, lr: float, warmup_epochs: float = 0.0,
                 name: str = "train", options: Optional[Dict[str, Any]] = None) -> List[Phase]:
    return [Phase(name, epochs, lr, warmup_epochs, options=dict(options or {}))]
