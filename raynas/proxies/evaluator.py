"""``ProxyEvaluator``: zero-cost proxy scores of a space's archs, built untrained and seeded.

In-process (no Ray inside): the pool hosts one per actor/GPU and feeds it batches of archs.
It pickles as the space, the options and one fixed minibatch (CPU tensors).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.arch import Arch, arch_id
from raynas.device import resolve_device
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator, Metrics
from raynas.proxies.registry import ProxyBatch, compute_proxies, proxy_spec
from raynas.rng import derive_rng

#: the proxies a default ProxyEvaluator reports
DEFAULT_PROXIES: Tuple[str, ...] = ("synflow", "naswot", "jacob_cov", "snip", "grad_norm", "params", "flops")
#: ImageNet statistics, PreNAS's synthetic "average image" (the data-free default)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_LOSSES: Dict[str, Callable] = {"cross_entropy": F.cross_entropy}


def data_free_batch(batch_size: int, input_shape: Sequence[int], *, seed: int = 0,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> ProxyBatch:
    """PreNAS's data-free input: images whose channel c is N(mean_c, std_c), no targets.

    Score it with ``loss_fn=None`` (objective = sum of logits). Non-3-channel shapes use N(0, 1).
    """
    shape = (int(batch_size),) + tuple(int(s) for s in input_shape)
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn(shape, generator=gen)
    if shape[1] == len(mean) == len(std):
        x = x * torch.tensor(std).view(1, -1, *([1] * (len(shape) - 2)))
        x = x + torch.tensor(mean).view(1, -1, *([1] * (len(shape) - 2)))
    return ProxyBatch(x, None)


class ProxyEvaluator(Evaluator):
    """Builds ``space.build_static(arch)`` untrained (init seeded by ``seed`` and the arch id) and
    reports each proxy in ``proxies`` on one fixed minibatch.

    Give ``batch=(inputs, targets)`` (e.g. 64 training images), or ``data_free=True`` for a
    synthetic PreNAS-style batch scored with the sum-of-logits objective (synflow, zen, params
    and flops never read the data anyway). ``timings`` accumulates seconds per proxy.
    With ``analytic_cost`` the params / flops proxies come from ``space.cost(arch)`` when it
    reports them for the batch's resolution (identical numbers, no forward pass).
    """

    #: a model per evaluation: never probed in the driver (it may need the trial's GPU)
    preferred_batch_size = 8

    def __init__(self, space: Any, proxies: Sequence[str] = DEFAULT_PROXIES, *,
                 batch: Optional[Union[ProxyBatch, Tuple[torch.Tensor, Optional[torch.Tensor]]]] = None,
                 data_free: bool = False, batch_size: int = 64,
                 input_shape: Optional[Sequence[int]] = None,
                 loss: Union[str, Callable, None] = "cross_entropy", num_classes: Optional[int] = None,
                 seed: int = 0, device: Union[str, torch.device] = "cpu",
                 proxy_options: Optional[Mapping[str, Any]] = None, analytic_cost: bool = True) -> None:
        from raynas.registry import create_space
        from raynas.space import SearchSpace

        self.proxies = tuple(proxies)
        if not self.proxies:
            raise ConfigError("ProxyEvaluator needs at least one proxy; see raynas.proxies.list_proxies()")
        for name in self.proxies:
            proxy_spec(name)  # unknown names fail here, naming the available ones
        self._space = space if isinstance(space, SearchSpace) else create_space(str(space))
        self.num_classes = num_classes
        self.seed = int(seed)
        self.device_name = str(device)
        self.proxy_options = dict(proxy_options or {})
        self.analytic_cost = bool(analytic_cost)
        self.data_free = bool(data_free)
        if self.data_free:
            if input_shape is None:
                res = self._space.input_resolution(self._space.smallest())
                if res is None:
                    raise ConfigError("data_free=True needs input_shape=(C, H, W) for this space")
                input_shape = (3, res, res)
            self.batch = data_free_batch(batch_size, input_shape, seed=self.seed)
            self.loss: Union[str, Callable, None] = None
        else:
            if batch is None:
                raise ConfigError("ProxyEvaluator needs batch=(inputs, targets) — one fixed minibatch — "
                                  "or data_free=True")
            b = ProxyBatch.of(batch)
            self.batch = ProxyBatch(b.inputs.detach().cpu(), None if b.targets is None else b.targets.detach().cpu())
            if isinstance(loss, str) and loss not in _LOSSES:
                raise ConfigError(f"unknown loss '{loss}'; use one of {sorted(_LOSSES)}, a callable, "
                                  "or None for the sum-of-logits objective")
            self.loss = loss
        self.metrics = self.proxies
        self.timings: Dict[str, float] = {}
        self._device: Optional[torch.device] = None
        self._device_batch: Optional[ProxyBatch] = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        # the space object travels with the evaluator (Ray's own pickles, never a user's file)
        state.update(_device=None, _device_batch=None, timings={})
        return state

    @property
    def space(self):
        return self._space

    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = resolve_device(self.device_name)
        return self._device

    def _batch_on_device(self) -> ProxyBatch:
        if self._device_batch is None:
            b = self.batch
            self._device_batch = ProxyBatch(b.inputs.to(self.device),
                                            None if b.targets is None else b.targets.to(self.device))
        return self._device_batch

    def _loss_fn(self) -> Optional[Callable]:
        return _LOSSES[self.loss] if isinstance(self.loss, str) else self.loss

    def init_seed(self, arch: Arch) -> int:
        """The torch seed an arch's untrained weights are drawn with (independent of order)."""
        return int(derive_rng(self.seed, "proxy-init", arch_id(arch)).integers(2**62))

    def build(self, arch: Arch) -> nn.Module:
        """The untrained network of ``arch`` on the evaluator's device, seeded."""
        arch = self.space.validate(arch)
        # fork_rng keeps the process-global generator untouched by the seeded init
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed(arch))
            if self.num_classes is None:
                model = self.space.build_static(arch)
            else:
                model = self.space.build_static(arch, self.num_classes)
        return model.to(self.device)

    def _analytic(self, arch: Arch) -> Metrics:
        wanted = [p for p in ("params", "flops") if p in self.proxies]
        if not (self.analytic_cost and wanted and self.num_classes is None):
            return {}
        inputs = self.batch.inputs
        if inputs.dim() != 4 or self.space.input_resolution(arch) != inputs.shape[-1] or inputs.shape[1] != 3:
            return {}
        start = time.perf_counter()
        cost = self.space.cost(arch)
        out = {p: float(cost[p]) for p in wanted if p in cost}
        for p in out:
            self.timings[p] = self.timings.get(p, 0.0) + (time.perf_counter() - start) / len(out)
        return out

    def score(self, arch: Arch) -> Metrics:
        arch = self.space.validate(arch)
        analytic = self._analytic(arch)
        rest = [p for p in self.proxies if p not in analytic]
        scores: Metrics = {}
        if rest:
            start = time.perf_counter()
            model = self.build(arch)
            self.timings["build"] = self.timings.get("build", 0.0) + time.perf_counter() - start
            scores = compute_proxies(rest, model, self._batch_on_device(), self._loss_fn(),
                                     timings=self.timings, **self.proxy_options)
        return {p: analytic[p] if p in analytic else scores[p] for p in self.proxies}

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        out = []
        for arch in archs:  # each arch's own time, not the batch's average
            start = time.perf_counter()
            out.append({**self.score(arch), "eval_seconds": time.perf_counter() - start})
        return out

