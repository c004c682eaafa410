"""Transformer isomers (PreNAS, Definition 3.1) and the allocation of choices to layers.

An isomer group holds every arch with the same fixed decisions (e.g. embed dim and depth) and
the same number of layers taking each choice of each per-layer dimension (e.g. how many layers
have 3 heads and how many 4): reordering layers leaves params and FLOPs unchanged, so a cost
budget cannot tell the members apart and a proxy must. A space that has such groups describes
them with an :class:`IsomerStructure` (the ViT one is ``spaces.vit_isomers.ViTIsomers``).
"""
from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError

#: a leading or ranged block of a weight tensor: one ``(start, stop)`` per tensor dimension
Box = Tuple[Tuple[int, int], ...]
#: a block of one named parameter
ParamBox = Tuple[str, Box]


@dataclass(frozen=True)
class IsomerGroup:
    """``fixed`` decisions shared by every member, ``num_layers`` reorderable layers and, per
    per-layer dimension, how many layers take each of its choices (choices sorted ascending)."""

    fixed: Tuple[Tuple[str, Any], ...]
    num_layers: int
    counts: Tuple[Tuple[str, Tuple[int, ...]], ...]

    def __post_init__(self) -> None:
        for dim, c in self.counts:
            if sum(c) != self.num_layers or min(c) < 0:
                raise ConfigError(f"isomer group counts {c} of '{dim}' must be >= 0 and sum to "
                                  f"the {self.num_layers} layers")

    @property
    def fixed_values(self) -> Dict[str, Any]:
        return dict(self.fixed)

    def counts_of(self, dimension: str) -> Tuple[int, ...]:
        return dict(self.counts)[dimension]

    @property
    def key(self) -> str:
        """A readable id, e.g. ``depth=12,embed_dim=192|num_heads=4+8|mlp_ratio=0+12``."""
        fixed = ",".join(f"{k}={v}" for k, v in self.fixed)
        counts = "|".join(f"{d}={'+'.join(map(str, c))}" for d, c in self.counts)
        return f"{fixed}|{counts}"

    @property
    def size(self) -> int:
        """How many distinct archs the group holds (a multinomial per dimension)."""
        total = 1
        for _, c in self.counts:
            ways = math.factorial(self.num_layers)
            for n in c:
                ways //= math.factorial(n)
            total *= ways
        return total


def count_compositions(num_layers: int, num_choices: int) -> Iterator[Tuple[int, ...]]:
    """Every way to split ``num_layers`` layers over ``num_choices`` choices (counts per choice)."""
    for bars in itertools.combinations(range(num_layers + num_choices - 1), num_choices - 1):
        edges = (-1,) + bars + (num_layers + num_choices - 1,)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(num_choices))


def arrangements(counts: Sequence[int]) -> Iterator[Tuple[int, ...]]:
    """Every distinct sequence of choice indices with ``counts[c]`` entries equal to ``c``."""
    num_layers = sum(counts)
    if not counts or counts[0] == num_layers:
        yield tuple([0] * num_layers)
        return
    # place the largest choice first, then recurse on the remaining positions
    top = len(counts) - 1
    if counts[top] == 0:
        yield from arrangements(counts[:-1])
        return
    for positions in itertools.combinations(range(num_layers), counts[top]):
        chosen = set(positions)
        for rest in arrangements(counts[:-1]):
            it = iter(rest)
            yield tuple(top if i in chosen else next(it) for i in range(num_layers))


def allocate(step_scores: np.ndarray, counts: Sequence[int]) -> List[int]:
    """Choice index per layer maximising the summed scores of the steps each layer takes.

    ``step_scores[l, k]`` is the gain of layer ``l`` going from choice ``k`` to ``k + 1``; a layer
    at choice ``c`` collects steps ``0 .. c-1``; ``counts[c]`` layers must end at choice ``c``.
    With two choices this is PreNAS Algorithm 1: every layer starts at the smaller choice and
    the larger one goes to the ``counts[1]`` layers with the highest step score (ties to the
    lower layer), which the paper notes is exactly optimal. With more choices the optimum is an
    assignment problem (layers to choice slots), solved exactly (Hungarian method).
    """
    scores = np.asarray(step_scores, dtype=np.float64)
    num_layers = scores.shape[0]
    counts = [int(c) for c in counts]
    if scores.ndim != 2 or scores.shape[1] != len(counts) - 1:
        raise ConfigError(f"step scores of shape {scores.shape} do not fit {len(counts)} choices "
                          f"(expected ({num_layers}, {len(counts) - 1}))")
    if sum(counts) != num_layers or min(counts) < 0:
        raise ConfigError(f"choice counts {counts} must be >= 0 and sum to {num_layers} layers")
    if len(counts) == 1:
        return [0] * num_layers
    if len(counts) == 2:
        order = np.argsort(-scores[:, 0], kind="stable")  # highest first, ties to lower layers
        out = [0] * num_layers
        for layer in order[:counts[1]]:
            out[int(layer)] = 1
        return out
    from scipy.optimize import linear_sum_assignment

    gain = np.concatenate([np.zeros((num_layers, 1)), np.cumsum(scores, axis=1)], axis=1)
    slot_choice = np.repeat(np.arange(len(counts)), counts)
    rows, cols = linear_sum_assignment(gain[:, slot_choice], maximize=True)
    out = [0] * num_layers
    for layer, slot in zip(rows, cols):
        out[int(layer)] = int(slot_choice[slot])
    return out


class IsomerStructure(ABC):
    """What the PreNAS selector needs to know about a space whose layers can be reordered.

    Scores live on the weights of the randomly initialised supernet: the selector takes one
    saliency map per parameter named by :meth:`saliency_params` at :meth:`supernet_arch`, and
    every quantity below is a sum of those maps over :data:`ParamBox` blocks.
    """

    #: per-layer dimensions reallocated inside a group (arch fields holding one value per layer)
    dimensions: Tuple[str, ...] = ()

    @abstractmethod
    def choices(self, dimension: str) -> Tuple[Any, ...]:
        """The choices of a per-layer dimension, ascending."""

    @abstractmethod
    def supernet_arch(self) -> Arch:
        """The arch the supernet is activated at for scoring (the space's largest)."""

    @abstractmethod
    def input_shape(self) -> Tuple[int, ...]:
        """Shape of one input sample, e.g. ``(3, 224, 224)``."""

    @abstractmethod
    def saliency_params(self) -> List[str]:
        """Names of the supernet weights that are scored."""

    @abstractmethod
    def groups(self) -> Iterator[IsomerGroup]:
        """Every isomer group of the space."""

    @abstractmethod
    def group_of(self, arch: Arch) -> IsomerGroup:
        """The group an arch belongs to."""

    @abstractmethod
    def step_boxes(self, group: IsomerGroup, layer: int, dimension: str, step: int) -> List[ParamBox]:
        """The weights layer ``layer`` adds going from choice ``step`` to ``step + 1``."""

    @abstractmethod
    def subnet_boxes(self, arch: Arch) -> List[ParamBox]:
        """The weights an arch inherits from the supernet (the ones a plain SNIP sums over)."""

    @abstractmethod
    def arch_of(self, group: IsomerGroup, allocation: Mapping[str, Sequence[int]]) -> Arch:
        """The member of ``group`` whose layers take choice indices ``allocation[dimension]``."""

    def members(self, group: IsomerGroup) -> Iterator[Arch]:
        """Every member of a group (use only on small groups: see :attr:`IsomerGroup.size`)."""
        per_dim = [list(arrangements(counts)) for _, counts in group.counts]
        for combo in itertools.product(*per_dim):
            yield self.arch_of(group, {dim: list(a) for (dim, _), a in zip(group.counts, combo)})


__all__ = ["Box", "ParamBox", "IsomerGroup", "IsomerStructure", "allocate", "arrangements",
           "count_compositions"]
