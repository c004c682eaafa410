"""The journal of a search: one JSON line per event, appended the moment it happens. It is the
source of truth of a search: what was proposed, what was evaluated, in order.

``results.parquet`` is rewritten atomically every few seconds (rewriting it per trial would
cost more than the trials on a long search); the journal in between is what makes a killed
driver lose nothing. A kill can only cut its last line short, which reading skips. Events of
the searcher (every call that changes its state; :mod:`raynas.resume` replays them):

- ``{"event": "suggest", "trial": id, "arch_ids": [...]}``: the archs proposed for a trial
  (``[]``: the strategy had none while others were in flight; ``"finished": true``: it ran out);
- ``{"event": "observe", "trial": id, "batch": [...] | null, "error": bool}``: the rows the
  searcher learnt from when the trial ended (``null``: it reported nothing);
- ``{"event": "reissue", "trial": id, "from": old_id}``: a trial in flight when a driver died,
  run again under a new id by the resumed search.

Events of the results collector (the table):

- ``{"event": "result", "trial": id, "batch": [...], "records": [...]}``: a trial reported;
  ``batch`` is what the trial reported per arch, ``records`` the table rows stored from it.
- ``{"event": "complete", "trial": id}``: Tune ended the trial.
- ``{"event": "error", "trial": id, "records": [...]}``: the trial failed for good; ``records``
  are the failure rows written for its archs that had none.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from raynas.errors import CheckpointError

JOURNAL_FILE = "results.journal.jsonl"


class Journal:
    """Append-only writer of the journal (opened lazily: the collector holding it is pickled by
    Tune, and an open file is not picklable)."""

    def __init__(self, directory: os.PathLike, fresh: bool) -> None:
        self.path = Path(directory) / JOURNAL_FILE
        self._file = None
        if fresh:
            # a new search in an existing folder starts a new journal (like its results table)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")

    def append(self, event: Mapping[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
            self._repair_tail()
        # flush to the OS at once: a killed process loses nothing the OS has (fsync would only
        # add protection against power loss, at a disk flush per trial)
        line = json.dumps({"event": event["event"], **event}, allow_nan=True, separators=(",", ":"))
        self._file.write(line + "\n")
        self._file.flush()

    def _repair_tail(self) -> None:
        """A killed writer may have left half a line: end it so the next event starts clean."""
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._file.write("\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        return state


def read_journal(directory: os.PathLike) -> List[Dict[str, Any]]:
    """Every complete event of the journal in ``directory`` (none if there is no journal).

    A line cut short by a kill is skipped; any other unreadable line means the file was
    damaged by something else, which is reported rather than guessed around.
    """
    path = Path(directory) / JOURNAL_FILE
    if not path.exists():
        return []
    data = path.read_bytes()
    events: List[Dict[str, Any]] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            event = None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            events.append(event)
            continue
        if _is_torn(lines, number):
            continue  # the line a killed writer was writing
        raise CheckpointError(f"{path} line {number} is not a journal event ({line[:80]!r}): the file was "
                              "damaged; delete the line (or the file, losing the results it holds) to go on")
    return events


def _is_torn(lines: List[bytes], number: int) -> bool:
    """A line a killed writer left half-written: a prefix of an event line (events always start
    with the same bytes). A resumed writer ends such a line before appending, so torn lines may
    also sit in the middle of the file, one per resume."""
    line = lines[number - 1].strip()
    return line.startswith(_EVENT_PREFIX) or _EVENT_PREFIX.startswith(line)


_EVENT_PREFIX = b'{"event":"'


def iter_records(events: List[Mapping[str, Any]], key: str = "arch_id") -> Iterator[Dict[str, Any]]:
    """Table rows in the order the collector stored them (those that have a ``key``)."""
    for event in events:
        for record in event.get("records") or []:
            if isinstance(record, dict) and isinstance(record.get(key), str):
                yield record


def reported_rows(events: List[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """arch_id -> the row a trial last reported for it (failure rows for archs whose trial
    failed without reporting): what a re-run trial reports instead of evaluating again."""
    out: Dict[str, Dict[str, Any]] = {}
    for event in events:
        if event.get("event") == "result":
            for row in event.get("batch") or []:
                if isinstance(row, dict) and isinstance(row.get("arch_id"), str):
                    out[row["arch_id"]] = dict(row)
        elif event.get("event") == "error":
            for record in event.get("records") or []:
                key: Optional[str] = record.get("arch_id") if isinstance(record, dict) else None
                if key and key not in out:
                    out[key] = {"arch_id": key, "error": record.get("error") or "trial failed"}
    return out
