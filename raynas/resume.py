"""Resuming a search whose driver died: the journal is the source of truth.

The searcher journals every call that changes its state, in order (:mod:`raynas.ledger`):
each proposal (``suggest``: the trial and the archs it got, or that the strategy had none),
each observation (``observe``: the trial and the rows it learnt from) and each re-issue of a
trial in flight after a resume. A strategy is deterministic given its seed and this sequence of
calls, so resuming rebuilds the searcher from ``search.json`` and drives it through the journal
again: every proposal is checked against the recorded one (a journal that does not replay is
damaged, or belongs to another configuration, and is refused), and the searcher ends in exactly
the state it had when the driver died. Tune's own checkpoint (``tuner.pkl``, experiment and
searcher state files) is never read.

What was in flight at the kill:

- a trial proposed and not observed: re-issued first, with the same archs, in a new Tune run;
  archs it had already reported are answered from the journal, not evaluated again;
- a proposal the journal does not hold (the kill hit before it was written): never evaluated
  (a trial starts after its proposal is journaled), so the replayed searcher proposes it again.

With one trial in flight at a time (the default for cheap evaluators) the resumed run therefore
makes the same proposals, in the same order, as the uninterrupted one: the same table, row for
row. With several trials in flight the order in which results arrive depends on timing in any
run; the resumed searcher is still exactly the killed one, continued.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from raynas.errors import CheckpointError, clip

#: journal events written by the searcher (the collector writes ``result``/``complete``/``error``)
SEARCHER_EVENTS = ("suggest", "observe", "reissue")


def replay_journal(searcher, events: List[Mapping[str, Any]], where: Optional[Path] = None) -> Dict[str, int]:
    """Drive ``searcher`` (freshly set up, with the search's configuration and no journal
    attached) through the recorded calls. Returns counts of what was replayed; raises
    :class:`CheckpointError` naming the first event that does not replay."""
    counts = {"suggest": 0, "observe": 0, "reissue": 0}
    source = where or "the journal"
    for number, event in enumerate(events, start=1):
        kind = event.get("event")
        if kind not in SEARCHER_EVENTS:
            continue
        trial = event.get("trial")
        if not isinstance(trial, str):
            raise _damaged(source, number, event, "it names no trial")
        if kind == "suggest":
            expected = event.get("arch_ids")
            out = searcher.suggest(trial)
            got = list(out["arch_ids"]) if isinstance(out, dict) else []
            finished = not isinstance(out, dict) and out is not None
            if got != expected or bool(event.get("finished")) != finished:
                raise _damaged(source, number, event, f"the strategy now proposes {clip(got, 120)}"
                               f"{' (finished)' if finished else ''} instead: the journal belongs to another "
                               "configuration (strategy, options, seed, space, constraints) or another raynas "
                               "version, or it was edited")
        elif kind == "observe":
            if trial not in searcher.live_trials:
                raise _damaged(source, number, event, "it observes a trial that is not in flight")
            batch = event.get("batch")
            searcher.on_trial_complete(trial, result=None if batch is None else {"batch": list(batch)},
                                       error=bool(event.get("error")))
        else:
            old = event.get("from")
            if old not in searcher.live_trials:
                raise _damaged(source, number, event, "it re-issues a trial that is not in flight")
            searcher.rename_trial(old, trial)
        counts[kind] += 1
    return counts


def check_replayable(events: List[Mapping[str, Any]], where: Path) -> None:
    """Refuse, before anything starts, a journal whose results have no recorded proposals
    (written by an older raynas that journaled results only)."""
    if any(e.get("event") == "result" for e in events) and not any(e.get("event") == "suggest" for e in events):
        raise CheckpointError(f"{where} records results but not the proposals that led to them (it was written "
                              "by an older raynas): the search cannot be resumed exactly; start it again "
                              "(its table stays readable with raynas.SearchResult.load)")


def _damaged(source: Any, number: int, event: Mapping[str, Any], why: str) -> CheckpointError:
    return CheckpointError(f"{source} event {number} ({clip(dict(event), 160)}) does not replay: {why}. The "
                           "search cannot be resumed exactly; start it again (--overwrite)")
