"""Safe (de)serialisation shared by supernet checkpoints and exported subnets: weights as
safetensors, metadata as JSON, training state via ``torch.load(weights_only=True)`` only.
The metadata records the sha256 of every weight file (``files``), checked on load, so damage
after saving is caught instead of silently changing results. Every failure becomes one
:class:`CheckpointError` naming the file and what is wrong."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

from raynas.errors import CheckpointError, clip
from raynas.integrity import check_digest

MapLocation = Union[str, torch.device]


class FileSource:
    """Reads named files of an artifact from a directory or from an in-memory blob dict, and
    names them in errors."""

    def __init__(self, root: Union[str, os.PathLike, Mapping[str, bytes]], kind: str) -> None:
        self.kind = kind
        if isinstance(root, Mapping):
            self.dir: Optional[Path] = None
            self.blobs: Optional[Dict[str, bytes]] = dict(root)
        else:
            self.dir, self.blobs = Path(root), None
            if not self.dir.exists():
                raise CheckpointError(f"{kind} directory {self.dir} does not exist; pass the "
                                      f"directory the {kind} was saved to")
            if not self.dir.is_dir():
                raise CheckpointError(f"{kind} path {self.dir} is a file, not a directory; pass "
                                      f"the directory that holds it")

    def where(self, name: str) -> str:
        return str(self.dir / name) if self.dir is not None else f"{self.kind} blob '{name}'"

    def has(self, name: str) -> bool:
        return (self.dir / name).is_file() if self.dir is not None else name in self.blobs  # type: ignore[operator]

    def read(self, name: str) -> bytes:
        if not self.has(name):
            raise CheckpointError(f"{self.where(name)} is missing; the {self.kind} is incomplete "
                                  "(was it copied partially?) — save it again or pick another one")
        if self.dir is not None:
            try:
                data = (self.dir / name).read_bytes()
            except OSError as exc:
                raise CheckpointError(f"cannot read {self.where(name)} ({exc})") from exc
        else:
            data = self.blobs[name]  # type: ignore[index]
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise CheckpointError(f"{self.where(name)} must be bytes, got {type(data).__name__}")
            data = bytes(data)
        if not data:
            raise CheckpointError(f"{self.where(name)} is empty; the {self.kind} was not written "
                                  "completely — save it again or pick another one")
        return data


def directory_blobs(path: Union[str, os.PathLike], required: tuple, kind: str) -> Dict[str, bytes]:
    """Every top-level file of an artifact directory as bytes (for Ray's object store)."""
    source = FileSource(path, kind)
    for name in required:
        source.read(name)  # raises a clear error if missing or empty
    assert source.dir is not None
    return {p.name: p.read_bytes() for p in sorted(source.dir.iterdir())
            if p.is_file() and not p.name.startswith(".")}


# ------------------------------------------------------------------------------------- JSON
def json_text(obj: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} must be JSON-able (plain dicts, lists, strings, finite "
                              f"numbers): {exc}") from exc


def parse_json(source: FileSource, name: str, required: tuple = ()) -> Dict[str, Any]:
    data = source.read(name)
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{source.where(name)} is not valid JSON ({exc}); the file is "
                              "corrupt — save it again") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{source.where(name)} must hold a JSON object, got "
                              f"{type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise CheckpointError(f"{source.where(name)} lacks {', '.join(missing)}; it was not "
                              "written by raynas or is from an incompatible version")
    return value


def resolve_space(spec: Any, given: Any, where: str):
    """The space an artifact's JSON names, resolved through the registry (never by importing a
    module the file names), or ``given`` after checking it is that space (same name and options)."""
    from raynas.arch import canonical
    from raynas.registry import space_from_spec

    if given is None:
        return space_from_spec(spec)
    if not isinstance(spec, Mapping) or given.name != spec.get("name") or \
            canonical(dict(given.options)) != canonical(dict(spec.get("options") or {})):
        raise CheckpointError(f"{where} was saved for space {clip(spec)}, not for the given space "
                              f"{clip(given.spec())}; pass the matching space or none")
    return given


# ------------------------------------------------------------------------------ safetensors
def state_dict_tensors(module: nn.Module) -> Dict[str, torch.Tensor]:
    """CPU, contiguous copies of a module's state; tied tensors are cloned because safetensors
    refuses shared storage (loading assigns each name, so ties survive the round trip)."""
    out: Dict[str, torch.Tensor] = {}
    seen = set()
    for key, value in module.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[key] = t
    return out


def safetensors_bytes(module: nn.Module, metadata: Optional[Dict[str, str]] = None) -> bytes:
    """The module's state as a safetensors file, in memory (written with ``write_bytes_synced``,
    so the file gets the user's umask: the library's own writer creates it 0600)."""
    from safetensors.torch import save

    return save(state_dict_tensors(module), metadata=metadata or {})


def parse_safetensors(source: FileSource, name: str, recorded: Any = None,
                      recorded_in: str = "the metadata") -> Dict[str, torch.Tensor]:
    """The tensors of ``name``, after checking its digest against ``recorded`` (``files``)."""
    from safetensors.torch import load

    data = source.read(name)
    check_digest(name, source.where(name), data, recorded, recorded_in)
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError plus Rust panics
        raise CheckpointError(f"{source.where(name)} is truncated or corrupt ({type(exc).__name__}: "
                              f"{exc}); save it again or pick another checkpoint") from exc


def load_state_strict(module: nn.Module, tensors: Mapping[str, torch.Tensor], where: str,
                      built_from: str) -> None:
    """Load exactly: same keys, same shapes; otherwise say which differ and why that happens."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    mismatched = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
        raise CheckpointError(f"{where} does not fit the model rebuilt from {built_from}: "
                              + ", ".join(parts) + ". Were the weights saved for another space or size?")
    try:
        module.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where} cannot be loaded into the model rebuilt from {built_from}: "
                              f"{exc}") from exc


# --------------------------------------------------------------------------- torch (weights)
def torch_bytes(obj: Any, what: str) -> bytes:
    """``torch.save`` to bytes, checked to load back with ``weights_only=True`` — so an object
    that a safe load would refuse fails now, at save time, not at resume."""
    buffer = io.BytesIO()
    try:
        torch.save(obj, buffer)
    except Exception as exc:  # pickling errors of arbitrary user objects
        raise CheckpointError(f"{what} cannot be saved ({type(exc).__name__}: {exc}); keep it to "
                              "tensors, numbers, strings, lists and dicts") from exc
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what} holds objects that safe loading (torch.load weights_only=True) "
                              f"refuses: {exc}. Keep it to tensors, numbers, strings, lists and dicts") from exc
    return data


def parse_torch(source: FileSource, name: str, map_location: MapLocation, recorded: Any = None,
                recorded_in: str = "the metadata") -> Any:
    data = source.read(name)
    check_digest(name, source.where(name), data, recorded, recorded_in)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # zip errors, unpickling refusals, EOF: all mean "bad file"
        raise CheckpointError(f"{source.where(name)} is truncated, corrupt or holds objects that "
                              f"safe loading refuses ({type(exc).__name__}: {exc})") from exc


def write_bytes_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

