"""Isomer structure of the elastic ViT (PreNAS): which supernet weights a block choice uses.

Groups: same ``embed_dim`` and ``depth``, and the same number of layers with each head count and
each MLP ratio. Block steps, all at the group's embed dim ``e`` (head dim ``hd``):

- heads ``h_a -> h_b`` in layer ``l``: rows ``[3·hd·h_a, 3·hd·h_b)`` of ``blocks.l.attn.qkv.weight``
  (head-major layout, :mod:`spaces.layers.transformer`) and columns ``[hd·h_a, hd·h_b)`` of
  ``blocks.l.attn.proj.weight``;
- MLP ratio ``r_a -> r_b``: rows ``[int(e·r_a), int(e·r_b))`` of ``mlp.fc1.weight`` and the same
  columns of ``mlp.fc2.weight``.

These are every weight the step adds, so the sum of a member's step scores differs from its
layer-normalised SNIP (PreNAS Eq. 13 over the subnet's weights) by a constant of the group, and
the allocated member maximises Eq. 13 over the group. (tinyvision/PreNAS scores heads by their
qkv rows alone; the projection columns make the allocation exact for Eq. 13.)
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

from raynas.arch import Arch
from raynas.errors import ArchError
from raynas.selectors.isomers import IsomerGroup, IsomerStructure, ParamBox, count_compositions

PER_LAYER = ("num_heads", "mlp_ratio")


class ViTIsomers(IsomerStructure):
    """:class:`IsomerStructure` of an :class:`spaces.vit.ElasticViTSpace`."""

    dimensions = PER_LAYER

    def __init__(self, space) -> None:
        self.space = space
        self._choices = {"num_heads": tuple(space.num_heads), "mlp_ratio": tuple(space.mlp_ratios)}

    def choices(self, dimension: str) -> Tuple[Any, ...]:
        return self._choices[dimension]

    def supernet_arch(self) -> Arch:
        return self.space.largest()

    def input_shape(self) -> Tuple[int, ...]:
        s = self.space
        return (s.in_chans, s.img_size, s.img_size)

    def saliency_params(self) -> List[str]:
        return [name for name, _ in self.subnet_boxes(self.supernet_arch())]

    # ------------------------------------------------------------------ groups
    def groups(self) -> Iterator[IsomerGroup]:
        for embed_dim, depth in itertools.product(self.space.embed_dims, self.space.depths):
            for heads in count_compositions(depth, len(self._choices["num_heads"])):
                for ratios in count_compositions(depth, len(self._choices["mlp_ratio"])):
                    yield self._group(embed_dim, depth, heads, ratios)

    def _group(self, embed_dim: int, depth: int, heads: Tuple[int, ...],
               ratios: Tuple[int, ...]) -> IsomerGroup:
        return IsomerGroup(fixed=(("depth", int(depth)), ("embed_dim", int(embed_dim))),
                           num_layers=int(depth),
                           counts=(("num_heads", tuple(heads)), ("mlp_ratio", tuple(ratios))))

    def group_of(self, arch: Arch) -> IsomerGroup:
        arch = self.space.validate(arch)
        counts = {}
        for dim in PER_LAYER:
            choices = self._choices[dim]
            counts[dim] = tuple(sum(1 for v in arch[dim] if v == c) for c in choices)
        return self._group(arch["embed_dim"], arch["depth"], counts["num_heads"], counts["mlp_ratio"])

    def arch_of(self, group: IsomerGroup, allocation: Mapping[str, Sequence[int]]) -> Arch:
        fixed = group.fixed_values
        arch: Dict[str, Any] = {"embed_dim": fixed["embed_dim"], "depth": fixed["depth"]}
        for dim in PER_LAYER:
            indices = list(allocation[dim])
            if len(indices) != group.num_layers:
                raise ArchError(dim, indices, f"{group.num_layers} choice indices, one per layer")
            arch[dim] = [self._choices[dim][i] for i in indices]
        return self.space.validate(arch)

    # ------------------------------------------------------------------ weights
    def _hidden(self, embed_dim: int, ratio: float) -> int:
        return int(embed_dim * ratio)  # as the supernet and the static model compute it

    def step_boxes(self, group: IsomerGroup, layer: int, dimension: str, step: int) -> List[ParamBox]:
        e = group.fixed_values["embed_dim"]
        low, high = self._choices[dimension][step], self._choices[dimension][step + 1]
        block = f"blocks.{layer}"
        if dimension == "num_heads":
            hd = self.space.head_dim
            return [(f"{block}.attn.qkv.weight", ((3 * hd * low, 3 * hd * high), (0, e))),
                    (f"{block}.attn.proj.weight", ((0, e), (hd * low, hd * high)))]
        if dimension == "mlp_ratio":
            a, b = self._hidden(e, low), self._hidden(e, high)
            return [(f"{block}.mlp.fc1.weight", ((a, b), (0, e))),
                    (f"{block}.mlp.fc2.weight", ((0, e), (a, b)))]
        raise ArchError("dimension", dimension, PER_LAYER)

    def subnet_boxes(self, arch: Arch) -> List[ParamBox]:
        """The Conv2d / Linear weights of the exported subnet, as blocks of the supernet's."""
        s = self.space
        arch = s.validate(arch)
        e, hd, p = arch["embed_dim"], s.head_dim, s.patch_size
        out: List[ParamBox] = [("patch_embed.proj.weight", ((0, e), (0, s.in_chans), (0, p), (0, p)))]
        for i, (heads, ratio) in enumerate(zip(arch["num_heads"], arch["mlp_ratio"])):
            a, hidden, block = hd * heads, self._hidden(e, ratio), f"blocks.{i}"
            out += [(f"{block}.attn.qkv.weight", ((0, 3 * a), (0, e))),
                    (f"{block}.attn.proj.weight", ((0, e), (0, a))),
                    (f"{block}.mlp.fc1.weight", ((0, hidden), (0, e))),
                    (f"{block}.mlp.fc2.weight", ((0, e), (0, hidden)))]
        out.append(("head.weight", ((0, int(s.num_classes)), (0, e))))
        return out


__all__ = ["ViTIsomers"]
