"""A tiny elastic-width CNN supernet (two conv+BN layers, optional elastic resolution) that
implements the raynas Supernet/SearchSpace contract, for testing evaluation, BN recalibration,
checkpoints and export without the real spaces. Importing this module registers the space."""
from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas import Supernet, register_space
from raynas.arch import Arch
from raynas.errors import ArchError
from raynas.space import Decision, SearchSpace, require_choice, require_mapping

SPACE_NAME = "tiny_elastic_cnn_test"


class ElasticConv2d(nn.Conv2d):
    """3x3 conv whose input width follows the input tensor and output width is chosen."""

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None) -> torch.Tensor:  # type: ignore[override]
        out = out_channels or self.out_channels
        weight = self.weight[:out, :x.shape[1]]
        return F.conv2d(x, weight, None, self.stride, self.padding)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of the input; updates only that slice of the running
    statistics (cumulative average when momentum is None, as _BatchNorm does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, factor, self.eps)


class ElasticLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.linear(x, self.weight[:, :x.shape[1]], self.bias)


class TinyStatic(nn.Module):
    """The standalone subnet ``export`` fills."""

    def __init__(self, w1: int, w2: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.fc = nn.Linear(w2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


class TinySupernet(Supernet):
    def __init__(self, space: "TinySpace", num_classes: int) -> None:
        super().__init__(space)
        self.num_classes = num_classes
        self.conv1 = ElasticConv2d(3, max(space.w1), 3, padding=1, bias=False)
        self.bn1 = ElasticBatchNorm2d(max(space.w1))
        self.conv2 = ElasticConv2d(max(space.w1), max(space.w2), 3, stride=2, padding=1, bias=False)
        self.bn2 = ElasticBatchNorm2d(max(space.w2))
        self.fc = ElasticLinear(max(space.w2), num_classes)
        self._widths = (max(space.w1), max(space.w2))

    def _apply_arch(self, arch: Arch) -> None:
        self._widths = (arch["w1"], arch["w2"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, w2 = self._widths
        x = F.relu(self.bn1(self.conv1(x, w1)))
        x = F.relu(self.bn2(self.conv2(x, w2)))
        return self.fc(x.mean(dim=(2, 3)))

    def export(self, arch: Arch) -> nn.Module:
        arch = self.space.validate(arch)
        w1, w2 = arch["w1"], arch["w2"]
        static = TinyStatic(w1, w2, self.num_classes)
        with torch.no_grad():
            static.conv1.weight.copy_(self.conv1.weight[:w1])
            static.conv2.weight.copy_(self.conv2.weight[:w2, :w1])
            for src, dst, w in ((self.bn1, static.bn1, w1), (self.bn2, static.bn2, w2)):
                dst.weight.copy_(src.weight[:w])
                dst.bias.copy_(src.bias[:w])
                dst.running_mean.copy_(src.running_mean[:w])
                dst.running_var.copy_(src.running_var[:w])
                dst.num_batches_tracked.copy_(src.num_batches_tracked)
            static.fc.weight.copy_(self.fc.weight[:, :w2])
            static.fc.bias.copy_(self.fc.bias)
        return static


@register_space(SPACE_NAME)
class TinySpace(SearchSpace):
    """Tiny elastic-width CNN for tests (w1, w2 and optionally the input resolution)."""

    def __init__(self, w1: Sequence[int] = (4, 8, 12), w2: Sequence[int] = (8, 16, 24),
                 resolutions: Sequence[int] = (), num_classes: int = 10, image_size: int = 16) -> None:
        super().__init__(w1=list(w1), w2=list(w2), resolutions=list(resolutions),
                         num_classes=num_classes, image_size=image_size)
        self.w1, self.w2 = tuple(w1), tuple(w2)
        self.resolutions = tuple(resolutions)
        self.num_classes, self.image_size = int(num_classes), int(image_size)

    def _make_decisions(self) -> List[Decision]:
        out = [Decision("w1", self.w1), Decision("w2", self.w2)]
        if self.resolutions:
            out.append(Decision("resolution", self.resolutions))
        return out

    def from_decisions(self, values: Mapping[str, Any]) -> Arch:
        arch = {"w1": values["w1"], "w2": values["w2"]}
        if self.resolutions:
            arch["resolution"] = values["resolution"]
        return self.validate(arch)

    def to_decisions(self, arch: Arch) -> Dict[str, Any]:
        return dict(self.validate(arch))

    def validate(self, arch: Arch) -> Arch:
        arch = require_mapping(arch, self.name)
        fields = {"w1", "w2"} | ({"resolution"} if self.resolutions else set())
        if set(arch) != fields:
            bad = sorted(set(arch) ^ fields)[0]
            raise ArchError(bad, arch.get(bad), sorted(fields), space=self.name)
        out = {"w1": require_choice("w1", arch["w1"], self.w1, self.name),
               "w2": require_choice("w2", arch["w2"], self.w2, self.name)}
        if self.resolutions:
            out["resolution"] = require_choice("resolution", arch["resolution"], self.resolutions, self.name)
        return out

    def input_resolution(self, arch: Arch) -> Optional[int]:
        return arch["resolution"] if self.resolutions else None

    def cost(self, arch: Arch) -> Dict[str, float]:
        arch = self.validate(arch)
        w1, w2, c = arch["w1"], arch["w2"], self.num_classes
        r = arch.get("resolution", self.image_size)
        r2 = (r + 1) // 2
        params = 27 * w1 + 2 * w1 + 9 * w1 * w2 + 2 * w2 + w2 * c + c
        macs = r * r * 27 * w1 + r2 * r2 * 9 * w1 * w2 + w2 * c
        return {"params": float(params), "macs": float(macs), "flops": float(2 * macs)}

    def build_supernet(self, num_classes: int, **kwargs: Any) -> TinySupernet:
        return TinySupernet(self, num_classes, **kwargs)

    def build_static(self, arch: Arch, num_classes: int) -> TinyStatic:
        arch = self.validate(arch)
        return TinyStatic(arch["w1"], arch["w2"], num_classes)


def make_supernet(seed: int = 0, num_classes: int = 10, **space_options: Any) -> TinySupernet:
    """A freshly initialised supernet with weights drawn from a local seeded generator."""
    from raynas import create_space

    space = create_space(SPACE_NAME, **space_options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build_supernet(num_classes)


def train_random_widths(net: TinySupernet, images_f: torch.Tensor, labels: torch.Tensor, *,
                        steps: int, batch_size: int = 64, lr: float = 0.2, seed: int = 0) -> None:
    """Brief SGD training where each step samples a random subnet (single-path uniform)."""
    import numpy as np

    from raynas.data.transforms import resize

    rng = np.random.default_rng(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)
    net.train()
    for _ in range(steps):
        arch = net.activate(net.space.sample(rng))
        idx = torch.from_numpy(rng.choice(len(labels), size=batch_size, replace=False))
        x = resize(images_f[idx], net.input_resolution(arch))
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def entry_point_site(folder) -> str:
    """Write into ``folder`` the metadata of an installed package whose ``raynas.spaces`` entry
    point registers this space, and return it: on another process's ``PYTHONPATH`` (with this
    module importable), the space resolves by name, as a user's installed package does. (raynas
    never imports a module named in a checkpoint.)"""
    from pathlib import Path

    info = Path(folder) / "raynas_tiny_test_space-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: raynas-tiny-test-space\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[raynas.spaces]\n{SPACE_NAME} = {__name__}\n")
    return str(folder)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread: for these tiny convs extra threads only add contention on the
    shared CPUs tests run on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ shared trained fixture
TRAINED_SPACE = {"w1": (4, 8, 12), "w2": (8, 16, 24), "resolutions": (12, 16), "image_size": 16}
TRAINED_IMAGE_SIZE = 16


def digits16():
    """The digits dataset at 16x16 (seed 0), loaded once per process."""
    return _digits16()


def trained_supernet(steps: int = 250) -> TinySupernet:
    """A fresh copy of a tiny supernet trained briefly with random subnets on digits (trained
    once per process; each call returns an independent copy)."""
    net = make_supernet(0, **TRAINED_SPACE)
    net.load_state_dict(_trained_state(steps))
    return net


@lru_cache(maxsize=1)
def _digits16():
    from raynas.data import load_dataset

    return load_dataset("digits", image_size=TRAINED_IMAGE_SIZE, seed=0)


@lru_cache(maxsize=2)
def _trained_state(steps: int) -> Dict[str, torch.Tensor]:
    from raynas.data import to_float

    ds = _digits16()
    train = ds.split("train")
    net = make_supernet(0, **TRAINED_SPACE)
    with single_threaded():
        train_random_widths(net, to_float(train.images, ds.mean, ds.std), train.labels,
                            steps=steps, seed=0)
    return {k: v.clone() for k, v in net.state_dict().items()}
