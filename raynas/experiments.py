"""Experiment folders: a plain name under the output folder, never clobbered unless asked.

A search writes into ``<storage>/<name>/``. The name is one folder name (it cannot climb out of
the output folder or point elsewhere), and a folder that already holds an experiment is
continued (``resume``) or replaced as a whole (``overwrite``), never silently mixed with a new
search.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from raynas.errors import ConfigError, clip

#: letters, digits and ``._+-``; starts with a letter or digit (so never ``.``, ``..`` or hidden)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
#: files whose presence makes a folder an experiment (search.json, the journal, the table)
MARKERS = ("search.json", "results.journal.jsonl", "results.parquet")


class ExperimentExistsError(ConfigError):
    """A new search would write into the folder of an existing experiment."""


def check_name(name: str) -> str:
    """``name`` if it is a plain folder name, else one error saying what a name may hold."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"experiment name {clip(name, 100)} is not a plain folder name: use letters, digits, "
                          "'.', '_', '+' and '-' (starting with a letter or digit, no '/'); the experiment "
                          "is written to OUTPUT/NAME, choose OUTPUT with --output (storage_path=)")
    return name


def default_name(storage: Path, stem: str) -> str:
    """``<stem>-<date>-<time>``, with ``-2``, ``-3``... if a search started in the same second."""
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = base, 1
    while (Path(storage) / name).exists():
        n += 1
        name = f"{base}-{n}"
    return check_name(name)


def is_experiment(directory: Path) -> bool:
    """Whether ``directory`` holds (part of) a raynas experiment."""
    return any((Path(directory) / marker).exists() for marker in MARKERS)


def status_of(directory: Path) -> str:
    """``finished``, ``interrupted``, ``failed`` or ``unfinished``, from its ``search.json``."""
    from raynas.results import read_search_meta

    try:
        meta = read_search_meta(directory)
    except ConfigError:
        return "unfinished"
    status = meta.get("status")
    if status in ("finished", "interrupted", "failed"):
        return str(status)
    return "finished" if meta.get("finished_at") else "unfinished"


def check_new(directory: Path, overwrite: bool) -> None:
    """Refuse to start a search in the folder of an existing experiment unless ``overwrite``
    (checked before anything starts; :func:`prepare_new` acts on it)."""
    directory = Path(directory)
    if is_experiment(directory) and not overwrite:
        raise ExperimentExistsError(
            f"experiment {directory} already exists ({status_of(directory)}): continue it with "
            f"--resume {directory} (resume=True), replace it with --overwrite (overwrite=True), "
            "or choose another --name")


def prepare_new(directory: Path, overwrite: bool) -> None:
    """Make ``directory`` ready for a new search: refuse an existing experiment unless
    ``overwrite``, which removes its folder entirely (no old Tune files stay mixed in).

    A folder without experiment files (e.g. one holding only a supernet checkpoint) is used as is.
    """
    check_new(directory, overwrite)
    if is_experiment(directory):
        shutil.rmtree(directory)
