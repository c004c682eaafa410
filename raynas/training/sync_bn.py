"""Batch statistics synchronised across data-parallel ranks, for any BatchNorm a supernet uses.

Elastic supernets normalise a slice of each BN layer (``F.batch_norm`` on views of the full
parameters and running buffers), so ``nn.SyncBatchNorm.convert_sync_batchnorm`` cannot replace
them. Instead :class:`SyncBatchNormMode` intercepts every training-mode ``F.batch_norm`` call made
inside it and computes the statistics over the global batch: a run split over N ranks then
normalises exactly like one process holding the whole batch, which is what makes a data-parallel
run reproduce a single-process run. The running statistics (the slices passed in) are updated in
place with the same factor and the unbiased global variance, as BatchNorm does.

On CUDA with NCCL it uses torch's fused SyncBatchNorm kernels; elsewhere (CPU and gloo) a
two-pass computation whose all-reduces are differentiable (``torch.distributed.nn``).
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# the differentiable all-reduce of torch.distributed.nn is what the CPU path needs (its backward
# sums the gradients of every rank); torch marks it deprecated in favour of functional collectives
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated")

_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_DEFAULTS = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}


def _bind_batch_norm_args(args: tuple, kwargs: dict) -> dict:
    bound = dict(_BN_DEFAULTS)
    bound.update(zip(_BN_ARGS, args))
    bound.update(kwargs)
    return bound


def _channel_view(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.view(1, -1, *([1] * (dim - 2)))


def global_batch_norm(x: torch.Tensor, running_mean: Optional[torch.Tensor],
                      running_var: Optional[torch.Tensor], weight: Optional[torch.Tensor],
                      bias: Optional[torch.Tensor], momentum: float, eps: float, group: Any,
                      world_size: int) -> torch.Tensor:
    """Training-mode batch norm of ``x`` with mean and variance over every rank's batch."""
    import torch.distributed as dist

    if x.is_cuda and dist.get_backend(group) == "nccl":
        from torch.nn.modules._functions import SyncBatchNorm as _SyncBatchNormFunction

        return _SyncBatchNormFunction.apply(x, weight, bias, running_mean, running_var, eps,
                                            momentum, group, world_size)
    from torch.distributed.nn.functional import all_reduce

    dims = [0] + list(range(2, x.dim()))
    xf = x.float()
    local_count = x.numel() // x.shape[1]
    totals = all_reduce(torch.cat([xf.sum(dims), xf.new_tensor([float(local_count)])]), group=group)
    count = totals[-1]
    mean = totals[:-1] / count
    centred = xf - _channel_view(mean, x.dim())
    var = all_reduce((centred * centred).sum(dims), group=group) / count
    out = centred * _channel_view(torch.rsqrt(var + eps), x.dim())
    if weight is not None:
        out = out * _channel_view(weight.float(), x.dim())
    if bias is not None:
        out = out + _channel_view(bias.float(), x.dim())
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            n = float(count)
            unbiased = var.detach() * (n / max(n - 1.0, 1.0))
            running_mean.mul_(1.0 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1.0 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
    return out.to(x.dtype)


class SyncBatchNormMode(TorchFunctionMode):
    """Inside this context every ``F.batch_norm(..., training=True)`` uses global statistics.

    Every rank must run the same BN layers in the same order (true when all ranks train the same
    subnets). Evaluation-mode calls (running statistics) pass through unchanged.
    """

    def __init__(self, group: Any = None) -> None:
        super().__init__()
        import torch.distributed as dist

        self.group = group if group is not None else dist.group.WORLD
        self.world_size = dist.get_world_size(self.group)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            a = _bind_batch_norm_args(args, kwargs)
            if a["training"]:
                return global_batch_norm(a["input"], a["running_mean"], a["running_var"],
                                         a["weight"], a["bias"], float(a["momentum"] or 0.0),
                                         float(a["eps"]), self.group, self.world_size)
        return func(*args, **kwargs)
