"""Helpers shared by the CLI commands: parsing JSON/key=value options and printing tables."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from raynas.arch import Arch
from raynas.errors import ArchError, ConfigError, clip


def parse_kv_options(items: Optional[List[str]], what: str) -> Dict[str, Any]:
    """``["width_mult=0.5", "resolutions=[24,32]"]`` -> dict; values are read as JSON when they parse."""
    out: Dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what} option {clip(item, 100)} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _is_file(path: Path) -> bool:
    """Whether ``path`` names an existing file; False for text no file system could name (an
    inline JSON arch is often longer than a file name may be, or holds NUL characters)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_arch(text: str) -> Arch:
    """An arch from a JSON string, a JSON file, or a best.json written by ``raynas search``."""
    path = Path(text)
    try:
        source = path.read_text() if path.suffix == ".json" or _is_file(path) else text
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchError("<arch>", text[:80], "a JSON object or the path of a readable UTF-8 .json file",
                        hint=f"{type(exc).__name__}: {exc}") from exc
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ArchError("<arch>", text[:80], "a JSON object or the path of a .json file",
                        hint=f"JSON error: {exc}") from exc
    if isinstance(value, dict) and "arch" in value and isinstance(value["arch"], dict):
        value = value["arch"]  # best.json / config.json
    if not isinstance(value, dict):
        raise ArchError("<arch>", value, "a JSON object")
    return value
