"""The network a DARTS genotype is trained as: DARTS' ``NetworkCIFAR`` (stem, cells, optional
auxiliary head after the second reduction cell, global pooling, linear classifier), with
drop-path on every non-identity op while training."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from raynas.arch import Arch
from raynas.errors import ConfigError
from spaces.darts import MULTIPLIER, STEM_MULTIPLIER, STEPS, reduction_layers
from spaces.darts_ops import FactorizedReduce, ReLUConvBN, make_darts_op


class DartsCell(nn.Module):
    """A derived cell: node k+2 = op(input a) + op(input b); output = concat of nodes 2..5."""

    def __init__(self, pairs: Sequence[Sequence], C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(C_pp, C, 2) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        self.inputs: Tuple[int, ...] = tuple(int(src) for _, src in pairs)
        self.ops = nn.ModuleList(make_darts_op(op, C, 2 if reduction and src < 2 else 1)
                                 for op, src in pairs)
        # drop-path skips identities (DARTS): a dropped identity would just zero a residual
        self.droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor,
                keep_masks: Optional[torch.Tensor] = None, keep_prob: float = 1.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(STEPS):
            total = None
            for slot in (2 * k, 2 * k + 1):
                h = self.ops[slot](states[self.inputs[slot]])
                if keep_masks is not None and self.droppable[slot]:
                    h = h * (keep_masks[slot].view(-1, 1, 1, 1).to(h.dtype) / keep_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat(states[-MULTIPLIER:], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' CIFAR auxiliary classifier on the 8x8 map after the second reduction cell."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """DARTS' eval network for a genotype.

    ``forward`` returns logits; ``forward_with_aux`` also the auxiliary logits while training.
    Drop-path is active in training when ``drop_path_prob > 0``; its masks come from
    ``drop_path_generator`` (a seeded ``torch.Generator`` on the input's device, set by the
    training loop) so runs are reproducible without touching torch's global RNG.
    """

    def __init__(self, arch: Arch, channels: int = 36, layers: int = 20, num_classes: int = 10,
                 auxiliary: bool = True, in_channels: int = 3) -> None:
        super().__init__()
        self.arch = arch
        self.layers = layers
        stem = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem))
        c_pp, c_p, c_cur = stem, stem, channels
        reduction_prev = False
        cells: List[DartsCell] = []
        self.aux_index = 2 * layers // 3
        aux_channels = None
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                c_cur *= 2
            cells.append(DartsCell(arch["reduce" if reduction else "normal"], c_pp, c_p, c_cur,
                                   reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, MULTIPLIER * c_cur
            if i == self.aux_index:
                aux_channels = c_p
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = AuxiliaryHead(aux_channels, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.drop_path_prob = 0.0
        self.drop_path_generator: Optional[torch.Generator] = None

    def _keep_masks(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        p = float(self.drop_path_prob)
        if not self.training or p <= 0:
            return None
        if not p < 1:
            raise ConfigError(f"drop_path_prob must be in [0, 1), got {p}")
        if self.drop_path_generator is None:
            raise ConfigError("drop-path needs a seeded generator: set model.drop_path_generator "
                              "= torch.Generator(device).manual_seed(seed)")
        draws = torch.rand((len(self.cells), 2 * STEPS, x.shape[0]), device=x.device,
                           generator=self.drop_path_generator)
        return draws < (1.0 - p)

    def forward_with_aux(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        masks = self._keep_masks(x)
        keep = 1.0 - float(self.drop_path_prob)
        logits_aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, None if masks is None else masks[i], keep)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]

    def inference_parameters(self) -> int:
        """Parameters used at inference (the auxiliary head left out, as DARTS reports sizes)."""
        aux = {id(p) for p in self.auxiliary_head.parameters()} if self.auxiliary_head is not None else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in aux)
