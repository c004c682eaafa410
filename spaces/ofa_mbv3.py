"""Once-for-All MobileNetV3: the elastic search space and its weight-sharing supernet.

Network (MobileNetV3-Large layout, as OFA's ``ofa_mbv3_d234_e346_k357``): 3x3 stem conv,
a fixed MBConv (expand 1, kernel 3), five elastic stages (base widths 24, 40, 80, 112, 160 times
``width_mult``; activations relu, relu, h-swish, h-swish, h-swish; SE off, on, off, on, on),
final 1x1 expand conv, global average pool, 1x1 feature-mix conv, classifier.

Arch canonical form (the only format of these spaces)::

    {"resolution": 224,
     "stages": [{"depth": 3, "kernel": [3, 5, 7], "expand": [4, 6, 3]},   # 5 stages
                ...]}

``len(kernel) == len(expand) == depth``: blocks switched off by depth are absent. Each stage
keeps its first ``depth`` blocks. ``kernel`` is the depthwise kernel size of each block and
``expand`` its expand ratio (middle width ``make_divisible(round(in_channels * e), 8)``).
Flat decisions (for RL, Optuna, predictors): ``resolution``, ``s{i}.depth``,
``s{i}.b{j}.kernel``, ``s{i}.b{j}.expand`` (stage ``i`` and block ``j`` from 0).

Presets: ``ofa_mbv3`` (ImageNet, width 1.2, resolutions 128..224 step 16; layer shapes match
OFA's Note10 latency tables) and ``ofa_mbv3_cifar`` (32x32 inputs: stride-1 stem, stage strides
1, 2, 2, 1, 2 so 32x32 ends at 4x4, resolutions 24, 28, 32, width 1.0, no dropout, 10 classes).
Both take the same options, all recorded in ``space.spec()``: ``width_mult``, ``resolutions``,
``depth_choices``, ``kernel_choices``, ``expand_choices``, ``stem_stride``, ``stage_strides``,
``dropout``, ``kernel_transform`` (OFA's learned 7->5 / 5->3 kernel transforms) and
``num_classes`` (the default for ``cost``; ``build_supernet(num_classes)`` may differ). For a
model that trains in seconds on a CPU use e.g. ``width_mult=0.25, stage_strides=(2, 2, 2, 1, 2)``.

The supernet does not resize its input: callers resize batches to
``space.input_resolution(arch)``. ``space.layer_descriptors(arch)`` gives the OFA latency-table
keys of the arch, ``supernet.sort_channels()`` OFA's channel sorting for width phases.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from raynas.arch import Arch, canonical
from raynas.errors import ArchError, ConfigError
from raynas.registry import register_space
from raynas.space import Decision, SearchSpace, require_choice, require_mapping
from raynas.supernet import Supernet
from spaces.layers import (BlockGeometry, ElasticMBConv, MBConv, build_and_load, conv_bn_act,
                           expanded_channels, make_divisible, prefixed)
from spaces.ofa_mbv3_net import MobileNetV3, MobileNetV3Head, NetworkGeometry, initialize_weights
from spaces.options import choices, int_list

BASE_STEM_WIDTH = 16
BASE_STAGE_WIDTHS = (24, 40, 80, 112, 160)
BASE_FINAL_EXPAND_WIDTH = 960
BASE_FEATURE_WIDTH = 1280
STAGE_ACTIVATIONS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_SE = (False, True, False, True, True)
NUM_STAGES = len(BASE_STAGE_WIDTHS)
STAGE_FIELDS = ("depth", "expand", "kernel")

IMAGENET_OPTIONS: Dict[str, Any] = dict(
    width_mult=1.2, resolutions=(128, 144, 160, 176, 192, 208, 224), depth_choices=(2, 3, 4),
    kernel_choices=(3, 5, 7), expand_choices=(3, 4, 6), stem_stride=2,
    stage_strides=(2, 2, 2, 1, 2), dropout=0.1, kernel_transform=False, num_classes=1000)
CIFAR_OPTIONS: Dict[str, Any] = dict(
    IMAGENET_OPTIONS, width_mult=1.0, resolutions=(24, 28, 32), stem_stride=1,
    stage_strides=(1, 2, 2, 1, 2), dropout=0.0, num_classes=10)


@dataclass(frozen=True)
class OFAMobileNetV3Config:
    """Checked options of an OFA MobileNetV3 space and the channel widths they imply."""

    width_mult: float
    resolutions: Tuple[int, ...]
    depth_choices: Tuple[int, ...]
    kernel_choices: Tuple[int, ...]
    expand_choices: Tuple[float, ...]
    stem_stride: int
    stage_strides: Tuple[int, ...]
    dropout: float
    kernel_transform: bool
    num_classes: int

    @classmethod
    def from_options(cls, width_mult: float, resolutions: Sequence[int], depth_choices: Sequence[int],
                     kernel_choices: Sequence[int], expand_choices: Sequence[float],
                     stem_stride: int, stage_strides: Sequence[int], dropout: float,
                     kernel_transform: bool, num_classes: int) -> "OFAMobileNetV3Config":
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
            raise ConfigError(f"option 'width_mult' must be a positive number, got {width_mult!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"option 'dropout' must be in [0, 1), got {dropout!r}")
        if not isinstance(kernel_transform, bool):
            raise ConfigError(f"option 'kernel_transform' must be true or false, got {kernel_transform!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"option 'num_classes' must be a positive integer, got {num_classes!r}")
        return cls(width_mult=float(width_mult),
                   resolutions=choices("resolutions", resolutions),
                   depth_choices=choices("depth_choices", depth_choices),
                   kernel_choices=choices("kernel_choices", kernel_choices, odd=True),
                   expand_choices=choices("expand_choices", expand_choices, "number"),
                   stem_stride=int_list("stem_stride", [stem_stride], allowed=(1, 2))[0],
                   stage_strides=int_list("stage_strides", stage_strides, length=NUM_STAGES,
                                          allowed=(1, 2)),
                   dropout=float(dropout), kernel_transform=kernel_transform,
                   num_classes=int(num_classes))

    def width(self, base: int) -> int:
        return make_divisible(base * self.width_mult)

    @property
    def stem_width(self) -> int:
        return self.width(BASE_STEM_WIDTH)

    @property
    def stage_widths(self) -> Tuple[int, ...]:
        return tuple(self.width(w) for w in BASE_STAGE_WIDTHS)

    @property
    def max_depth(self) -> int:
        return self.depth_choices[-1]

    def first_block(self) -> BlockGeometry:
        c = self.stem_width
        return BlockGeometry(c, c, c, 3, 1, "relu", False, has_expand=False)

    def block_io(self) -> List[List[Tuple[int, int, int]]]:
        """(in_channels, out_channels, stride) of every block of the largest network."""
        out, in_ch = [], self.stem_width
        for width, stride in zip(self.stage_widths, self.stage_strides):
            stage = []
            for j in range(self.max_depth):
                stage.append((in_ch, width, stride if j == 0 else 1))
                in_ch = width
            out.append(stage)
        return out

    def network(self, arch: Arch, num_classes: int) -> NetworkGeometry:
        """Geometry of the static network of a validated arch."""
        stages = []
        for i, (stage, io) in enumerate(zip(arch["stages"], self.block_io())):
            stages.append(tuple(
                BlockGeometry(in_ch, out_ch, expanded_channels(in_ch, e), k, stride,
                              STAGE_ACTIVATIONS[i], STAGE_SE[i])
                for (in_ch, out_ch, stride), k, e in zip(io, stage["kernel"], stage["expand"])))
        return NetworkGeometry(self.stem_width, self.stem_stride, self.first_block(), tuple(stages),
                               self.width(BASE_FINAL_EXPAND_WIDTH), self.width(BASE_FEATURE_WIDTH),
                               num_classes, self.dropout)


def preserved_global_rng():
    """PyTorch layers draw a default init from the global RNG when constructed; we overwrite it
    with a seeded generator, and this context gives the global RNG its state back."""
    return torch.random.fork_rng(devices=[])


# ----------------------------------------------------------------------------------- the space
class OFAMobileNetV3Space(SearchSpace):
    """Once-for-All MobileNetV3: elastic depth, kernel, expand ratio and input resolution."""

    def __init__(self, *, width_mult: float, resolutions: Sequence[int], depth_choices: Sequence[int],
                 kernel_choices: Sequence[int], expand_choices: Sequence[float], stem_stride: int,
                 stage_strides: Sequence[int], dropout: float, kernel_transform: bool,
                 num_classes: int) -> None:
        cfg = OFAMobileNetV3Config.from_options(
            width_mult, resolutions, depth_choices, kernel_choices, expand_choices, stem_stride,
            stage_strides, dropout, kernel_transform, num_classes)
        super().__init__(width_mult=cfg.width_mult, resolutions=cfg.resolutions,
                         depth_choices=cfg.depth_choices, kernel_choices=cfg.kernel_choices,
                         expand_choices=cfg.expand_choices, stem_stride=cfg.stem_stride,
                         stage_strides=cfg.stage_strides, dropout=cfg.dropout,
                         kernel_transform=cfg.kernel_transform, num_classes=cfg.num_classes)
        self.config = cfg

    # ------------------------------------------------------------------------ decisions
    def _make_decisions(self) -> List[Decision]:
        cfg = self.config
        out = [Decision("resolution", cfg.resolutions)]
        for i in range(NUM_STAGES):
            out.append(Decision(f"s{i}.depth", cfg.depth_choices))
            for j in range(cfg.max_depth):
                out.append(Decision(f"s{i}.b{j}.kernel", cfg.kernel_choices))
                out.append(Decision(f"s{i}.b{j}.expand", cfg.expand_choices))
        return out

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        def get(name: str) -> Any:
            if values.get(name) is None:
                raise ArchError(name, values.get(name), "a value for every active decision",
                                space=self.name, hint="missing decision")
            return values[name]

        stages = []
        for i in range(NUM_STAGES):
            depth = get(f"s{i}.depth")
            depth = require_choice(f"s{i}.depth", depth, self.config.depth_choices, self.name)
            stages.append({"depth": depth,
                           "kernel": [get(f"s{i}.b{j}.kernel") for j in range(depth)],
                           "expand": [get(f"s{i}.b{j}.expand") for j in range(depth)]})
        return self.validate({"resolution": get("resolution"), "stages": stages})

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        arch = self.validate(arch)
        out: Dict[str, Any] = {"resolution": arch["resolution"]}
        for i, stage in enumerate(arch["stages"]):
            out[f"s{i}.depth"] = stage["depth"]
            for j in range(self.config.max_depth):
                active = j < stage["depth"]
                out[f"s{i}.b{j}.kernel"] = stage["kernel"][j] if active else None
                out[f"s{i}.b{j}.expand"] = stage["expand"][j] if active else None
        return out

    # ------------------------------------------------------------------------ validation
    def validate(self, arch: Arch) -> Arch:
        try:  # numpy scalars and tuples become plain ints and lists; bools stay bools
            arch = canonical(arch)
        except TypeError as exc:
            raise ArchError("<arch>", arch, "a JSON-able dict", space=self.name, hint=str(exc)) from None
        arch = require_mapping(arch, self.name)
        self._check_fields("", arch, ("resolution", "stages"))
        resolution = require_choice("resolution", arch["resolution"], self.config.resolutions,
                                    self.name)
        stages = arch["stages"]
        if not isinstance(stages, (list, tuple)) or len(stages) != NUM_STAGES:
            raise ArchError("stages", stages, f"a list of {NUM_STAGES} stage dicts", space=self.name)
        return {"resolution": resolution,
                "stages": [self._validate_stage(i, s) for i, s in enumerate(stages)]}

    def _check_fields(self, where: str, value: Dict[str, Any], fields: Sequence[str]) -> None:
        for key in value:
            if key not in fields:
                raise ArchError(f"{where}{key}", value[key], None, space=self.name,
                                hint=f"unknown field; the fields are {', '.join(fields)}")
        for key in fields:
            if key not in value:
                raise ArchError(f"{where}{key}", "<missing>", None, space=self.name,
                                hint=f"missing field; the fields are {', '.join(fields)}")

    def _validate_stage(self, i: int, stage: Any) -> Dict[str, Any]:
        where = f"stages[{i}]"
        if not isinstance(stage, Mapping):
            raise ArchError(where, stage, "a dict with fields depth, expand, kernel", space=self.name)
        self._check_fields(where + ".", stage, STAGE_FIELDS)
        depth = require_choice(f"{where}.depth", stage["depth"], self.config.depth_choices, self.name)
        out: Dict[str, Any] = {"depth": depth}
        for field, allowed in (("kernel", self.config.kernel_choices),
                               ("expand", self.config.expand_choices)):
            values = stage[field]
            if not isinstance(values, (list, tuple)) or len(values) != depth:
                raise ArchError(f"{where}.{field}", values, f"a list of {depth} values (one per "
                                f"active block) from {list(allowed)}", space=self.name)
            out[field] = [require_choice(f"{where}.{field}[{j}]", v, allowed, self.name)
                          for j, v in enumerate(values)]
        return out

    # ------------------------------------------------------------------------ cost & models
    def network_geometry(self, arch: Arch, num_classes: Optional[int] = None) -> NetworkGeometry:
        return self.config.network(self.validate(arch), self._classes(num_classes))

    def _classes(self, num_classes: Optional[int]) -> int:
        return self.config.num_classes if num_classes is None else int(num_classes)

    def cost(self, arch: Arch, num_classes: Optional[int] = None) -> Dict[str, float]:
        """Exact params (BN affine included) and conv/linear MACs and FLOPs (= 2 x MACs, as
        ``FlopCounterMode`` counts) of the exported model at the arch's resolution; no model is
        built. ``num_classes`` defaults to the space option."""
        arch = self.validate(arch)
        params, macs = self.config.network(arch, self._classes(num_classes)).cost(arch["resolution"])
        return {"params": float(params), "macs": float(macs), "flops": float(2 * macs)}

    def layer_descriptors(self, arch: Arch, num_classes: Optional[int] = 1000) -> List[str]:
        """OFA latency-lookup-table keys of the arch's layers (stem ``Conv``, every
        ``expanded_conv`` including the fixed first block, ``Conv_1``, ``AvgPool2D``,
        ``Conv_2``, ``Logits``); the network latency is the sum of their table entries.
        ``num_classes`` defaults to 1000, the classifier of OFA's tables."""
        arch = self.validate(arch)
        return self.config.network(arch, self._classes(num_classes)).lut_keys(arch["resolution"])

    def build_layer(self, descriptor: str) -> Tuple[nn.Module, Tuple[int, ...]]:
        """(module, batch-1 input shape) of one ``layer_descriptors`` key, to time it alone."""
        from spaces.mbconv_latency import layer_from_lut_key
        return layer_from_lut_key(descriptor)

    notation = ("r<resolution> d<depth of each of the 5 stages> k<kernel of each active block, '-' between "
                "stages> e<expand ratio of each active block, '-' between stages>; e.g. 'r32 d23222 "
                "k35-777-..' is 32 px input, stage 1 two blocks (kernels 3 and 5), stage 2 three blocks "
                "(kernel 7 each), ...")

    def describe(self, arch: Arch) -> str:
        """Compact form for tables: resolution, depth per stage, kernels and expands per block
        (:attr:`notation` says how to read it)."""
        arch = self.validate(arch)
        stages = arch["stages"]

        def blocks(field: str) -> str:
            return "-".join("".join(f"{v:g}" for v in s[field]) for s in stages)

        return (f"r{arch['resolution']} d{''.join(str(s['depth']) for s in stages)} "
                f"k{blocks('kernel')} e{blocks('expand')}")

    def input_resolution(self, arch: Arch) -> int:
        return self.validate(arch)["resolution"]

    def to_timm(self, model: MobileNetV3, config: Mapping[str, Any]):
        """The exported subnet as a timm ``MobileNetV3`` (see :mod:`spaces.ofa_timm`)."""
        from spaces.ofa_timm import to_timm

        norm = config["normalization"]
        return to_timm(model, int(config["input_resolution"]), norm["mean"], norm["std"])

    def build_static(self, arch: Arch, num_classes: Optional[int] = None, seed: int = 0) -> MobileNetV3:
        """An untrained static MobileNetV3 of the arch (the structure ``export`` fills).

        Weights come from a generator seeded with ``seed`` (never the global RNG)."""
        geometry = self.network_geometry(arch, num_classes)
        with preserved_global_rng():
            model = MobileNetV3(geometry)
        initialize_weights(model, torch.Generator().manual_seed(int(seed)))
        return model

    def build_supernet(self, num_classes: Optional[int] = None, seed: int = 0,
                       **kwargs: Any) -> "OFAMobileNetV3Supernet":
        if kwargs:
            raise ConfigError(f"unknown supernet options for space '{self.name}': {sorted(kwargs)}; "
                              "set space options through create_space(name, **options)")
        return OFAMobileNetV3Supernet(self, self._classes(num_classes), seed=seed)


# -------------------------------------------------------------------------------- the supernet
class ElasticStage(nn.Sequential):
    """A stage of elastic blocks that runs its first ``active_depth`` blocks."""

    def __init__(self, blocks: Sequence[ElasticMBConv]) -> None:
        super().__init__(*blocks)
        self.active_depth = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in itertools.islice(self._modules.values(), self.active_depth):
            x = block(x)
        return x


class OFAMobileNetV3Supernet(Supernet):
    """The largest OFA MobileNetV3; ``activate(arch)`` selects the subnet ``forward`` runs.

    Module names match the static :class:`~spaces.ofa_mbv3_net.MobileNetV3` (``stages.2.1.expand.conv``
    ...), so a supernet state dict lines up with every exported model's.
    """

    def __init__(self, space: OFAMobileNetV3Space, num_classes: int, seed: int = 0) -> None:
        super().__init__(space)
        cfg = space.config
        self.num_classes = int(num_classes)
        largest = cfg.network(space.largest(), self.num_classes)
        with preserved_global_rng():
            self.stem = conv_bn_act(3, cfg.stem_width, 3, cfg.stem_stride, "hswish")
            self.first_block = MBConv(cfg.first_block())
            self.stages = nn.ModuleList(
                ElasticStage([ElasticMBConv(in_ch, out_ch, stride, STAGE_ACTIVATIONS[i], STAGE_SE[i],
                                            cfg.kernel_choices, cfg.expand_choices,
                                            cfg.kernel_transform)
                              for in_ch, out_ch, stride in io])
                for i, io in enumerate(cfg.block_io()))
            self.head = MobileNetV3Head(largest.last_block_channels, largest.final_expand_channels,
                                        largest.feature_channels, self.num_classes, cfg.dropout)
        initialize_weights(self, torch.Generator().manual_seed(int(seed)))
        self.activate(space.largest())

    def _apply_arch(self, arch: Arch) -> None:
        for stage, spec in zip(self.stages, arch["stages"]):
            stage.active_depth = spec["depth"]
            for block, kernel, expand in zip(stage, spec["kernel"], spec["expand"]):
                block.configure(kernel, expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def static_state_dict(self, arch: Arch) -> Dict[str, torch.Tensor]:
        """The subnet's weights and BN statistics under the static MobileNetV3's names (views)."""
        arch = self.space.validate(arch)
        out: Dict[str, torch.Tensor] = {}
        for name in ("stem", "first_block", "head"):
            out.update(prefixed(f"{name}.", getattr(self, name).state_dict()))
        for i, (stage, spec) in enumerate(zip(self.stages, arch["stages"])):
            for j, (block, kernel, expand) in enumerate(zip(stage, spec["kernel"], spec["expand"])):
                out.update(prefixed(f"stages.{i}.{j}.",
                                    block.static_state_dict(kernel=kernel, expand_ratio=expand)))
        return out

    @torch.no_grad()
    def export(self, arch: Optional[Arch] = None) -> MobileNetV3:
        """A static MobileNetV3 with copies of the subnet's weights and BN statistics (the
        active subnet when ``arch`` is None): the structure of ``space.build_static(arch)``, so
        ``space_from_spec(spec).build_static(arch, num_classes)`` + its state dict rebuilds it."""
        arch = self.space.validate(self.active_arch if arch is None else arch)
        geometry = self.space.network_geometry(arch, self.num_classes)
        static = build_and_load(lambda: MobileNetV3(geometry), self.static_state_dict(arch),
                                like=next(self.parameters()))
        static.train(self.training)
        return static

    @property
    def supports_channel_sorting(self) -> bool:
        return True

    @property
    def num_width_phases(self) -> int:
        """One width phase per expand ratio (OFA's ``expand_ratio_stage``)."""
        return len(self.space.config.expand_choices)

    @torch.no_grad()
    def sort_channels(self, stage: Optional[int] = None, width_phase: int = 0) -> None:
        """OFA channel sorting of every block's expanded channels (see
        :meth:`ElasticMBConv.sort_channels`); the largest network's function is unchanged.

        ``stage``: one stage index, or None for all stages. ``width_phase``: OFA's
        ``expand_ratio_stage`` -- in phase ``p`` (0 = first width phase) the channel widths of
        the ``p`` largest expand ratios below the maximum are bucket boundaries that sorting
        does not move channels across, so widths trained in earlier phases keep their channels.
        """
        cfg = self.space.config
        if stage is not None and (isinstance(stage, bool) or not isinstance(stage, int)
                                  or not 0 <= stage < NUM_STAGES):
            raise ConfigError(f"sort_channels: stage must be None or 0..{NUM_STAGES - 1}, got {stage!r}")
        if isinstance(width_phase, bool) or not isinstance(width_phase, int) or not (
                0 <= width_phase < len(cfg.expand_choices)):
            raise ConfigError(f"sort_channels: width_phase must be 0..{len(cfg.expand_choices) - 1}, "
                              f"got {width_phase!r}")
        largest_first = sorted(cfg.expand_choices, reverse=True)
        for i in range(NUM_STAGES) if stage is None else [stage]:
            for block in self.stages[i]:
                protected = [expanded_channels(block.in_channels, e)
                             for e in largest_first[1:width_phase + 1]]
                block.sort_channels(protected)


# -------------------------------------------------------------------------------------- presets
@register_space("ofa_mbv3")
def ofa_mbv3(**options: Any) -> OFAMobileNetV3Space:
    """Once-for-All MobileNetV3 for ImageNet (width 1.2, d{2,3,4} e{3,4,6} k{3,5,7}, 128-224 px)."""
    return OFAMobileNetV3Space(**{**IMAGENET_OPTIONS, **options})


@register_space("ofa_mbv3_cifar")
def ofa_mbv3_cifar(**options: Any) -> OFAMobileNetV3Space:
    """Once-for-All MobileNetV3 for 32x32 images (stride-1 stem, 24/28/32 px; set width_mult)."""
    return OFAMobileNetV3Space(**{**CIFAR_OPTIONS, **options})
