"""The elastic BatchNorm: normalises the first ``x.shape[1]`` channels of the largest layer."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from spaces.layers.export import ElasticLayer
from spaces.layers.slicing import leading


class ElasticBatchNorm2d(nn.BatchNorm2d, ElasticLayer):
    """BatchNorm over the first ``x.shape[1]`` channels of the largest layer.

    A subclass of ``nn.BatchNorm2d`` so generic code (BN recalibration that resets the running
    statistics and sets ``momentum=None``) works unchanged. In training mode only the active
    slice of the running buffers moves, with the same factor ``nn.BatchNorm2d`` uses
    (``momentum``, or ``1/num_batches_tracked`` for a cumulative average when it is None).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        use_buffers = not self.training or self.track_running_stats
        # slices of the contiguous 1-D buffers are contiguous views: F.batch_norm's in-place
        # update of the running statistics lands in the active part of the full buffers
        return F.batch_norm(
            x,
            leading(self.running_mean, channels) if use_buffers else None,
            leading(self.running_var, channels) if use_buffers else None,
            leading(self.weight, channels), leading(self.bias, channels),
            use_batch_stats, factor, self.eps)

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(**config)

    def static_config(self, *, num_features: int) -> Dict[str, Any]:
        return {"num_features": int(num_features), "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}

    def static_state_dict(self, *, num_features: int) -> Dict[str, torch.Tensor]:
        out = {name: leading(getattr(self, name), num_features)
               for name in ("weight", "bias", "running_mean", "running_var")
               if getattr(self, name) is not None}
        if self.num_batches_tracked is not None:
            out["num_batches_tracked"] = self.num_batches_tracked
        return out

    @torch.no_grad()
    def permute_(self, order: torch.Tensor) -> None:
        """Reorder the channels (parameters and running statistics) in place."""
        for name in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(self, name)
            t.copy_(t.index_select(0, order))
