"""Weight files carry their sha256: the metadata written beside them (``meta.json``,
``config.json``, ``predictor.json``) records ``files: {name: {"sha256": ..., "bytes": ...}}``
and every load checks it, so a file changed or damaged after saving is an error naming it,
not silently different results. (No torch here: predictors use it too.)"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Mapping

from raynas.errors import CheckpointError, clip

#: key of the metadata that maps each weight file to its digest
FILES_KEY = "files"


def file_digest(data: bytes) -> Dict[str, Any]:
    """What the metadata records of a file: its sha256 and size."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def check_digest(name: str, where: str, data: bytes, recorded: Any, recorded_in: str) -> None:
    """Raise if ``data`` (file ``name``, shown as ``where``) is not the file whose digest the
    metadata's ``files`` (``recorded``, read from ``recorded_in``) holds. Metadata without
    ``files`` (written before raynas recorded digests) is not checked."""
    if recorded is None:
        return
    entry = recorded.get(name) if isinstance(recorded, Mapping) else None
    expected = entry.get("sha256") if isinstance(entry, Mapping) else None
    if not isinstance(expected, str):
        raise CheckpointError(f"{recorded_in} records no sha256 for {name}: the metadata is damaged or was "
                              "edited; save the artifact again")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CheckpointError(f"{where} is not the file {recorded_in} describes: its sha256 is {actual[:16]}... "
                              f"({len(data):,} bytes), the recorded one {clip(expected, 80)} "
                              f"({clip(entry.get('bytes'), 30)} bytes). It was changed or damaged after it was "
                              "saved: save it again or restore it from a good copy")
