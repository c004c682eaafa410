"""Helpers shared by the CLI commands: help formatting, parsing JSON/key=value options and
number lists, reading archs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from raynas.arch import Arch
from raynas.errors import ArchError, ConfigError, clip


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something: not for None/False defaults (the help
    text then says what happens) and not when the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text.lower() \
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) \
                or action.option_strings == [] and action.nargs in ("?", "*"):
            return text
        return super()._get_help_string(action)


def float_list(text: str) -> List[float]:
    """``"15,20"`` -> ``[15.0, 20.0]``: the argparse type of repeatable number flags
    (``--latency 15 --latency 20`` and ``--latency 15,20`` mean the same; use ``action="extend"``)."""
    out = []
    for part in text.split(","):
        try:
            out.append(float(part.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a number (give e.g. 15 or 15,20)") from None
    return out


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


def add_latency_options(group, several: bool = False) -> None:
    """``--latency-table`` / ``--latency-column`` / ``--latency-key``: one way to give a device's
    latency to every command (see :mod:`raynas.hardware.sources`)."""
    repeat = "; repeat for several devices" if several else ""
    group.add_argument("--latency-table", action="append" if several else "store", metavar="PATH",
                       help="latency of each arch as metric latency_ms: an OFA-format lookup table "
                            "(a .yaml file, or a folder of <res>_lookup_table.yaml as 'raynas lut build' "
                            f"writes) or a per-arch CSV/Parquet with --latency-column{repeat}")
    group.add_argument("--latency-column", action="append" if several else "store", metavar="COLUMN",
                       help="with a CSV/Parquet --latency-table: the column of the device's milliseconds, "
                            f"e.g. lat_pixel3{repeat}")
    group.add_argument("--latency-key", default="arch_str",
                       help="key column of a CSV/Parquet --latency-table (the space's table key, "
                            "else canonical arch JSON)")


def latency_sources(space, tables, columns, key: str) -> List[Any]:
    """``[(device name, cost function)]`` for the ``--latency-*`` flags: one per lookup table,
    one per column of a per-arch table (several columns may share one table)."""
    from raynas.hardware.sources import is_per_arch_table, latency_source

    tables = [t for t in ([tables] if isinstance(tables, str) else list(tables or []))]
    columns = [c for c in ([columns] if isinstance(columns, str) else list(columns or []))]
    if columns and not tables:
        raise ConfigError("--latency-column needs --latency-table FILE (the CSV/Parquet holding the column)")
    per_arch = [t for t in tables if is_per_arch_table(t)]
    if len(per_arch) > 1:
        raise ConfigError(f"give one per-arch --latency-table (got {per_arch}); name its devices with "
                          "--latency-column")
    if per_arch and not columns:
        raise ConfigError(f"{per_arch[0]} is a per-arch table: name the column of the device's milliseconds "
                          "with --latency-column (e.g. lat_pixel3)")
    if columns and not per_arch:
        raise ConfigError("--latency-column names a column of a CSV/Parquet --latency-table, but every "
                          "--latency-table given is a lookup table (YAML file or folder)")
    out = [latency_source(t, space, key=key) for t in tables if not is_per_arch_table(t)]
    out += [latency_source(per_arch[0], space, column=c, key=key) for c in columns]
    return out
