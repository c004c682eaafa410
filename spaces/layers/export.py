"""The one export style of every elastic layer (Once-for-All's lesson: a dynamic layer produces
its static layer, and that layer round-trips through a config).

An elastic layer, for one setting (a width, a kernel, a head count), gives the config of the
static layer it then computes (``static_config``) and that layer's weights, sliced from the
shared ones under the static layer's parameter names (``static_state_dict``). ``export`` puts
the two together. Networks do the same one level up: the supernet's ``export(arch)`` builds the
static network from the arch and loads the state dict its layers' ``static_state_dict`` compose.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

import torch
import torch.nn as nn


def build_and_load(build: Callable[[], nn.Module], state_dict: Mapping[str, torch.Tensor],
                   like: torch.Tensor) -> nn.Module:
    """``build()`` the static module on the meta device, allocate it on ``like``'s device and
    dtype, and load ``state_dict`` strictly (every parameter and buffer must be given; the
    tensors are copied, so views of a supernet's weights are fine).

    Large models (AutoFormer-B) export in a fraction of the time a random init would take.
    """
    with torch.device("meta"):
        model = build()
    unsaved = set(name for name, _ in model.named_buffers()) - set(model.state_dict())
    if unsaved:  # non-persistent buffers hold computed constants: build them for real
        model = build()
    model = model.to_empty(device=like.device)
    if like.is_floating_point():
        model = model.to(dtype=like.dtype)
    model.load_state_dict(dict(state_dict), strict=True)
    return model


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` with every key under ``prefix`` (a sub-layer's entries in its parent's dict)."""
    return {prefix + key: value for key, value in state.items()}


class ElasticLayer:
    """Mixin of every elastic ``nn.Module``: ``static_config`` / ``static_state_dict`` for a
    setting (keyword arguments named by each layer) and the static layer built from a config."""

    @staticmethod
    def static_from_config(config: Mapping[str, Any]) -> nn.Module:
        """An (untrained) static layer from :meth:`static_config`'s dict."""
        raise NotImplementedError

    def static_config(self, **setting: Any) -> Dict[str, Any]:
        """JSON-able constructor arguments of the static layer of ``setting``."""
        raise NotImplementedError

    def static_state_dict(self, **setting: Any) -> Dict[str, torch.Tensor]:
        """The static layer's parameters and buffers: leading slices (views) of this layer's."""
        raise NotImplementedError

    def export(self, **setting: Any) -> nn.Module:
        """The static layer of ``setting`` holding copies of the sliced weights (and BN
        statistics); in eval mode it computes what this layer computes at that setting."""
        config = self.static_config(**setting)
        like = next(self.parameters())  # type: ignore[attr-defined]
        return build_and_load(lambda: self.static_from_config(config), self.static_state_dict(**setting), like)
