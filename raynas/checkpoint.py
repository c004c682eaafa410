"""Supernet checkpoints: a directory written atomically, loadable without executing code.

Layout: ``model.safetensors`` (state dict), ``meta.json`` (space spec, num_classes, supernet
build options, dataset, training progress, the sha256 of every weight file under ``files``, and
any JSON-able extras), and optionally
``optimizer.pt`` / ``trainer_state.pt`` (``torch.save``; read back only with
``weights_only=True``). :func:`checkpoint_to_bytes` / :func:`load_supernet_from_bytes` carry a
checkpoint through Ray's object store to nodes without a shared filesystem.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from raynas.errors import CheckpointError, RaynasError, clip
from raynas.io import atomic_directory
from raynas.integrity import FILES_KEY, file_digest
from raynas.serialization import (FileSource, MapLocation, directory_blobs, json_text, load_state_strict,
                                  parse_json, parse_safetensors, parse_torch, resolve_space,
                                  safetensors_bytes, torch_bytes, write_bytes_synced)
from raynas.space import SearchSpace
from raynas.supernet import Supernet

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
OPTIMIZER_FILE = "optimizer.pt"
TRAINER_STATE_FILE = "trainer_state.pt"
CHECKPOINT_FORMAT = "raynas-supernet/1"
_REQUIRED = (MODEL_FILE, META_FILE)
_KIND = "supernet checkpoint"


def _version() -> str:
    import raynas

    return raynas.__version__


def save_supernet_checkpoint(path: Union[str, os.PathLike], supernet: Supernet,
                             meta: Mapping[str, Any], *, optimizer_state: Any = None,
                             extra_state: Any = None) -> Path:
    """Write ``path/`` atomically (a reader sees the old checkpoint or the new one, whole).

    ``meta`` must give ``num_classes`` (unless the supernet has a ``num_classes`` attribute) and
    may give ``supernet_options`` (keyword arguments of ``space.build_supernet``), ``dataset``,
    ``epoch``, ``step``, ``config`` or any JSON-able extra. The space spec is taken from the
    supernet. Returns the checkpoint directory.
    """
    full = dict(meta)
    num_classes = full.get("num_classes", getattr(supernet, "num_classes", None))
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise CheckpointError(f"meta['num_classes'] must be a positive int (what build_supernet "
                              f"needs to rebuild the model), got {num_classes!r}")
    full.update({
        "format": CHECKPOINT_FORMAT,
        "raynas_version": _version(),
        "space": supernet.space.spec(),
        "num_classes": num_classes,
        "supernet_options": dict(full.get("supernet_options", supernet.build_options or {})),
    })
    json_text(full, "checkpoint meta")  # not JSON-able: fail before serialising the weights
    blobs = {MODEL_FILE: safetensors_bytes(supernet, {"format": "pt", "raynas": CHECKPOINT_FORMAT})}
    if optimizer_state is not None:
        blobs[OPTIMIZER_FILE] = torch_bytes(optimizer_state, "optimizer_state")
    if extra_state is not None:
        blobs[TRAINER_STATE_FILE] = torch_bytes(extra_state, "extra_state")
    # the digest of every weight file, checked on load: damage after saving is an error
    full[FILES_KEY] = {name: file_digest(data) for name, data in blobs.items()}
    meta_text = json_text(full, "checkpoint meta")
    with atomic_directory(path) as tmp:
        for name, data in blobs.items():
            write_bytes_synced(tmp / name, data)
        write_bytes_synced(tmp / META_FILE, meta_text.encode("utf-8"))
    return Path(path)


def _load(source: FileSource, map_location: MapLocation, space: Optional[SearchSpace] = None
          ) -> Tuple[Supernet, Dict[str, Any]]:
    meta = parse_json(source, META_FILE, required=("space", "num_classes"))
    where_meta = source.where(META_FILE)
    tensors = parse_safetensors(source, MODEL_FILE, meta.get(FILES_KEY), where_meta)
    try:
        space = resolve_space(meta["space"], space, where_meta)
        supernet = space.build_supernet(int(meta["num_classes"]), **dict(meta.get("supernet_options") or {}))
    except (RaynasError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot rebuild the supernet described by {where_meta} "
                              f"(space {clip(meta['space'])}): {exc}") from exc
    load_state_strict(supernet, tensors, source.where(MODEL_FILE), f"{where_meta} ({space.name})")
    return supernet.to(map_location), meta


def load_supernet_checkpoint(path: Union[str, os.PathLike], *, map_location: MapLocation = "cpu",
                             space: Optional[SearchSpace] = None) -> Tuple[Supernet, Dict[str, Any]]:
    """Rebuild the space and supernet from ``meta.json`` and load the weights strictly.

    The space is the registered one ``meta.json`` names (with its options); pass ``space`` to
    use that object instead (it must have the same name and options).
    """
    return _load(FileSource(path, _KIND), map_location, space)


def load_training_state(source: Union[str, os.PathLike, Mapping[str, bytes]], *,
                        map_location: MapLocation = "cpu") -> Dict[str, Any]:
    """``{"optimizer_state": ..., "extra_state": ...}`` (None where not saved) of a checkpoint
    directory or blob dict, loaded with ``weights_only=True``."""
    files = FileSource(source, _KIND)
    recorded = parse_json(files, META_FILE).get(FILES_KEY) if files.has(META_FILE) else None
    return {key: parse_torch(files, name, map_location, recorded, files.where(META_FILE)) if files.has(name) else None
            for key, name in (("optimizer_state", OPTIMIZER_FILE), ("extra_state", TRAINER_STATE_FILE))}


def checkpoint_to_bytes(path: Union[str, os.PathLike]) -> Dict[str, bytes]:
    """All files of a checkpoint as ``{name: bytes}``, to ship through Ray's object store."""
    return directory_blobs(path, _REQUIRED, _KIND)


def load_supernet_from_bytes(blobs: Mapping[str, bytes], *, map_location: MapLocation = "cpu",
                             space: Optional[SearchSpace] = None) -> Tuple[Supernet, Dict[str, Any]]:
    """:func:`load_supernet_checkpoint` from :func:`checkpoint_to_bytes` output (no disk)."""
    if not isinstance(blobs, Mapping):
        raise CheckpointError(f"expected the dict checkpoint_to_bytes returns, got {type(blobs).__name__}")
    return _load(FileSource(blobs, _KIND), map_location, space)


def read_checkpoint_meta(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Only ``meta.json`` (cheap: e.g. to resume or to list checkpoints)."""
    return parse_json(FileSource(path, _KIND), META_FILE, required=("space", "num_classes"))


def check_dataset_fits(meta: Mapping[str, Any], dataset: Any, where: Union[str, os.PathLike]) -> None:
    """Refuse a dataset whose classes are not the ones the checkpoint's classifier was built
    for (checked before a pool loads anything: every evaluation would be wrong or fail)."""
    expected, got = int(meta["num_classes"]), int(dataset.num_classes)
    if got != expected:
        raise CheckpointError(f"{where} was trained for {expected} classes, but the dataset "
                              f"{clip(getattr(dataset, 'spec', '?'), 120)} has {got}: give the dataset the "
                              "supernet was trained on (--data)")


__all__ = ["check_dataset_fits", "save_supernet_checkpoint", "load_supernet_checkpoint", "load_training_state",
           "checkpoint_to_bytes", "load_supernet_from_bytes", "read_checkpoint_meta",
           "MODEL_FILE", "META_FILE", "OPTIMIZER_FILE", "TRAINER_STATE_FILE"]
