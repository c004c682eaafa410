"""An exported subnet in formats that load without raynas: a timm model (timm + safetensors)
and ONNX (any ONNX runtime).

Both start from a raynas export folder (``model.safetensors`` + ``config.json``, see
:mod:`raynas.export`) and are written beside it: ``timm/`` (``config.json`` +
``model.safetensors``) and ``model.onnx``. Each is checked before it is kept: the new model's
eval outputs must equal the raynas model's on a seeded batch at the subnet's input resolution.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from raynas.errors import ConfigError, RaynasError
from raynas.export import load_exported
from raynas.io import atomic_directory, atomic_path
from raynas.serialization import json_text, write_bytes_synced

TIMM_DIR = "timm"
ONNX_FILE = "model.onnx"
#: outputs of the converted model must match the raynas model's within this (float32 sums in
#: another order; timm's blocks compute the same ops)
TOLERANCE = 1e-4
PathLike = Union[str, os.PathLike]


def check_batch(config: Mapping[str, Any], batch: int = 4, seed: int = 0) -> torch.Tensor:
    """A seeded input batch at the subnet's input resolution (what the checks compare on)."""
    res = int(config.get("input_resolution") or config.get("image_size") or 32)
    return torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(seed))


def _max_difference(a: nn.Module, b: Any, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((a(x) - b(x)).abs().max())


def export_timm(path_dir: PathLike) -> Tuple[Path, float]:
    """Write ``path_dir/timm/`` (timm model config + weights) for an exported subnet whose space
    maps onto a timm architecture (OFA MobileNetV3 -> timm ``MobileNetV3``); returns the folder
    and the largest output difference from the raynas model (checked <= :data:`TOLERANCE`)."""
    from safetensors.torch import save

    model, config = load_exported(path_dir)
    space = _space_of(config)
    timm_model, timm_config = space.to_timm(model, config)
    x = check_batch(config)
    diff = _max_difference(model, timm_model.eval(), x)
    if not diff <= TOLERANCE:
        raise RaynasError(f"the timm model of {path_dir} differs from the subnet by {diff:.3g} (> {TOLERANCE}); "
                          "not written")
    timm_config = {**timm_config, "raynas": {"space": config["space"], "arch": config["arch"],
                                             "arch_id": config.get("arch_id"), "metrics": config.get("metrics")}}
    target = Path(path_dir) / TIMM_DIR
    tensors = {k: v.detach().contiguous() for k, v in timm_model.state_dict().items()}
    with atomic_directory(target) as tmp:
        write_bytes_synced(tmp / "model.safetensors", save(tensors, metadata={"format": "pt"}))
        write_bytes_synced(tmp / "config.json", json_text(timm_config, "timm config").encode("utf-8"))
    return target, diff


def export_onnx(path_dir: PathLike, opset: Optional[int] = None, check: bool = True) -> Tuple[Path, Optional[float]]:
    """Write ``path_dir/model.onnx`` (input ``images``: normalised float NCHW at the subnet's
    resolution, any batch size; output ``logits``) with ``torch.onnx``; with ``check`` and
    onnxruntime installed, its outputs are compared with the raynas model's. Returns the path
    and the largest difference (None when onnxruntime is missing)."""
    try:
        import onnxscript  # noqa: F401 - torch.onnx's exporter needs it
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'raynas[onnx]'") from None
    model, config = load_exported(path_dir)
    x = check_batch(config)
    target = Path(path_dir) / ONNX_FILE
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(target, suffix=".onnx") as tmp:
        program = torch.onnx.export(model, (x,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), opset_version=opset, verbose=False)
        program.save(str(tmp))
        diff = _onnx_difference(str(tmp), model, x) if check else None
    return target, diff


def _onnx_difference(path: str, model: nn.Module, x: torch.Tensor) -> Optional[float]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"images": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    diff = float(abs(got - want).max())
    if not diff <= TOLERANCE:
        raise RaynasError(f"the ONNX model differs from the subnet by {diff:.3g} (> {TOLERANCE}) under "
                          "onnxruntime; not written")
    return diff


def _space_of(config: Mapping[str, Any]):
    from raynas.registry import space_from_spec

    from raynas.space import SearchSpace

    space = space_from_spec(config["space"])
    if type(space).to_timm is SearchSpace.to_timm:
        raise ConfigError(f"space '{space.name}' has no timm export (OFA MobileNetV3 spaces have one; ViT "
                          "subnets already are timm VisionTransformer modules)")
    return space


def export_formats(path_dir: PathLike, timm: bool = False, onnx: bool = False) -> Dict[str, Any]:
    """Run the requested conversions of an export folder; ``{format: (path, max difference)}``."""
    out: Dict[str, Any] = {}
    if timm:
        out["timm"] = export_timm(path_dir)
    if onnx:
        out["onnx"] = export_onnx(path_dir)
    return out
