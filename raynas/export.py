"""Exported subnets: ``model.safetensors`` + ``config.json``, enough to rebuild the standalone
model in a new process and feed it exactly the inputs its reported accuracy was measured on."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from raynas.arch import Arch, arch_id, canonical
from raynas.data.transforms import prepare_inputs
from raynas.errors import CheckpointError, RaynasError
from raynas.io import atomic_directory
from raynas.integrity import FILES_KEY, file_digest
from raynas.serialization import (FileSource, MapLocation, json_text, load_state_strict, parse_json,
                                  parse_safetensors, resolve_space, safetensors_bytes, write_bytes_synced)
from raynas.space import SearchSpace

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EXPORT_FORMAT = "raynas-subnet/1"
_REQUIRED_KEYS = ("space", "arch", "num_classes", "normalization")
_KIND = "exported model"


def save_exported(path_dir: Union[str, os.PathLike], model: nn.Module, *, space: SearchSpace,
                  arch: Arch, num_classes: int, mean: Sequence[float], std: Sequence[float],
                  metrics: Optional[Mapping[str, float]] = None, dataset: Optional[str] = None,
                  image_size: Optional[int] = None, evaluation: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``path_dir/`` atomically: the static ``model``'s weights and a config naming the
    space, arch, classes, input resolution, normalisation, metrics and raynas version."""
    import raynas

    arch = space.validate(arch)
    config = {
        "format": EXPORT_FORMAT,
        "raynas_version": raynas.__version__,
        "space": space.spec(),
        "arch": arch,
        "arch_id": arch_id(arch),
        "num_classes": int(num_classes),
        "input_resolution": space.input_resolution(arch),
        "image_size": image_size,
        "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
        "metrics": canonical(dict(metrics or {})),
        "dataset": dataset,
        # how ``metrics`` were measured (split, seed, calibration), so they can be reproduced
        "evaluation": canonical(dict(evaluation or {})),
    }
    json_text(config, "export config")  # not JSON-able: fail before serialising the weights
    weights = safetensors_bytes(model, {"format": "pt", "raynas": EXPORT_FORMAT})
    config[FILES_KEY] = {MODEL_FILE: file_digest(weights)}   # checked on load
    text = json_text(config, "export config")
    with atomic_directory(path_dir) as tmp:
        write_bytes_synced(tmp / MODEL_FILE, weights)
        write_bytes_synced(tmp / CONFIG_FILE, text.encode("utf-8"))
    return Path(path_dir)


def load_exported(path_dir: Union[str, os.PathLike], *, map_location: MapLocation = "cpu",
                  space: Optional[SearchSpace] = None) -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild ``space.build_static(arch, num_classes)`` from ``config.json``, load the weights
    strictly and return ``(model in eval mode, config)``.

    The space is the registered one ``config.json`` names; pass ``space`` to use that object
    instead (same name and options)."""
    source = FileSource(path_dir, _KIND)
    config = parse_json(source, CONFIG_FILE, required=_REQUIRED_KEYS)
    where = source.where(CONFIG_FILE)
    tensors = parse_safetensors(source, MODEL_FILE, config.get(FILES_KEY), where)
    try:
        space = resolve_space(config["space"], space, where)
        arch = space.validate(config["arch"])
        model = space.build_static(arch, int(config["num_classes"]))
    except (RaynasError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot rebuild the model described by {where}: {exc}") from exc
    load_state_strict(model, tensors, source.where(MODEL_FILE), f"{where} ({space.name})")
    return model.to(map_location).eval(), config


def prepare_exported_inputs(images_u8: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
    """Normalise and resize uint8 images as the evaluator did for this model."""
    norm = config["normalization"]
    return prepare_inputs(images_u8, norm["mean"], norm["std"], config.get("input_resolution"))


def predict(model: nn.Module, config: Mapping[str, Any], images_u8: torch.Tensor, *,
            batch_size: int = 256, device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """Logits [N, num_classes] (on CPU) for uint8 images [N, C, H, W], in eval mode."""
    device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(images_u8), batch_size):
                x = prepare_exported_inputs(images_u8[start:start + batch_size].to(device), config)
                outputs.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    if not outputs:
        return torch.zeros(0, int(config["num_classes"]))
    return torch.cat(outputs)


def exported_accuracy(model: nn.Module, config: Mapping[str, Any], images_u8: torch.Tensor,
                      labels: torch.Tensor, **options: Any) -> float:
    """Top-1 accuracy (%) of an exported model on uint8 images."""
    logits = predict(model, config, images_u8, **options)
    return 100.0 * int((logits.argmax(dim=1) == labels.cpu()).sum()) / max(len(labels), 1)


# ----------------------------------------------------------------------------- from a supernet
def export_subnet(checkpoint: Union[str, os.PathLike], arch: Arch, output: Union[str, os.PathLike], *,
                  data: Optional[str] = None, seed: int = 0, calib_batches: Optional[int] = None,
                  batch_size: int = 128, device: Optional[str] = None) -> Tuple[Path, Dict[str, float]]:
    """Recalibrate ``arch``'s BN statistics exactly as the pool's evaluator does (same
    calibration batches), measure its validation accuracy, and save the static subnet.

    The config records the dataset, split seed and calibration settings, so
    :func:`verify_exported` can reproduce the reported accuracy from the two files alone.
    """
    from raynas.checkpoint import load_supernet_checkpoint
    from raynas.data import load_dataset
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    supernet, meta = load_supernet_checkpoint(checkpoint)
    arch = supernet.space.validate(arch)   # a bad arch fails before any data is loaded
    spec = data or meta.get("dataset")
    if not spec:
        raise CheckpointError(f"{checkpoint} does not name its dataset; pass data=...")
    dataset = load_dataset(spec, seed=seed).eval_splits()
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    evaluator = WeightInheritedEvaluator.from_dataset(supernet, dataset, calib_batches=calib_batches,
                                                      batch_size=batch_size, device=dev)
    metrics = evaluator.evaluate_one(arch)  # leaves the arch active with recalibrated BN
    model = supernet.export(arch).cpu().eval()
    path = save_exported(output, model, space=supernet.space, arch=arch, num_classes=int(meta["num_classes"]),
                         mean=dataset.mean, std=dataset.std, metrics=metrics, dataset=spec,
                         image_size=dataset.image_size,
                         evaluation={"split": "val", "seed": seed, "calib_batches": calib_batches,
                                     "batch_size": batch_size})
    return path, metrics


#: accuracy points by which a reproduced accuracy may differ from the recorded one (the same
#: data, split and calibration give the same number on CPU; another device may flip a few images)
VERIFY_TOLERANCE = 0.5


def verify_exported(path_dir: Union[str, os.PathLike], tolerance: float = VERIFY_TOLERANCE) -> float:
    """Accuracy (%) of an exported model on the validation split its config names, checked
    against the accuracy its config records: a difference of more than ``tolerance`` points
    (damaged weights, an edited resolution or normalisation, another dataset) raises
    :class:`CheckpointError` with both numbers."""
    from raynas.data import load_dataset

    model, config = load_exported(path_dir)
    evaluation = config.get("evaluation") or {}
    if not config.get("dataset"):
        raise CheckpointError(f"{path_dir} does not record its dataset; evaluate it with exported_accuracy()")
    recorded = (config.get("metrics") or {}).get("accuracy")
    if not isinstance(recorded, (int, float)) or isinstance(recorded, bool):
        raise CheckpointError(f"{Path(path_dir) / CONFIG_FILE} records no accuracy to verify against; evaluate "
                              "the model with exported_accuracy()")
    # the images at the size they were measured at (sources like digits are resized when decoded)
    val = load_dataset(config["dataset"], seed=int(evaluation.get("seed", 0)),
                       image_size=config.get("image_size")).split(evaluation.get("split", "val"))
    accuracy = exported_accuracy(model, config, val.images, val.labels)
    if abs(accuracy - float(recorded)) > tolerance:
        raise CheckpointError(
            f"{path_dir} gives {accuracy:.2f}% on {config['dataset']} ({evaluation.get('split', 'val')} split), but its "
            f"{CONFIG_FILE} records {float(recorded):.2f}% (tolerance {tolerance} points): the weights, the input "
            "preprocessing it records (resolution, mean, std) or the data differ from those the accuracy was "
            "measured with; export the subnet again")
    return accuracy
