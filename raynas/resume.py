"""Resuming a search whose driver died: Tune restores its trials and the searcher's state from
its last experiment checkpoint, and the journal (:mod:`raynas.ledger`) brings the searcher from
that checkpoint up to the moment of the kill.

What can be in flight when the driver dies, and what happens to it on resume:

- a trial the checkpoint knows as running (or pending): Tune runs it again with the same config;
  the archs it had already reported are answered from the journal (``known`` rows of the
  trainable), not evaluated again, and the searcher observes them once, when the journal says it
  did or when the re-run completes;
- a trial created after the checkpoint that reported (or completed) before the kill: the
  checkpoint does not know it, so its archs are adopted from the journal - seen, counted against
  the budget and observed - in the order the searcher observed them;
- a trial created after the checkpoint that had not reported: lost with the driver; its archs
  were never recorded, so the searcher proposes others in their place.

Every arch ends in the results once, and a strategy's state (population, Pareto archive, Optuna
study, policy) equals the state it had observed before the kill. One limit: an adopted arch is
observed, not proposed again, so a strategy whose next proposals depend on its own proposal
history (an Optuna sampler's random state advances with every ask) continues from the same
knowledge, not necessarily with the very proposals the killed driver would have made. A kill
with every trial known to Tune's last checkpoint resumes exactly.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from raynas.arch import arch_from_json


def replay_journal(searcher, events: List[Mapping[str, Any]]) -> Dict[str, int]:
    """Apply the journal's events after the searcher's checkpoint to ``searcher`` (an
    ``ArchSearcher`` just restored). Returns counts of what was replayed."""
    counts = {"completed": 0, "adopted": 0}
    reported: Dict[str, List[Dict[str, Any]]] = {}
    archs_of: Dict[str, List[Dict[str, Any]]] = {}
    finished = set()
    for event in events:
        kind, trial = event.get("event"), event.get("trial")
        if not isinstance(trial, str):
            continue
        _remember_archs(archs_of, trial, event)
        if kind == "result":
            reported[trial] = [row for row in event.get("batch") or [] if isinstance(row, dict)]
            if trial in searcher._live:
                searcher.on_trial_result(trial, {"batch": reported[trial]})
        elif kind in ("complete", "error"):
            finished.add(trial)
            if trial in searcher._live:
                # exactly what Tune told the searcher before the kill
                if kind == "error":
                    searcher.on_trial_complete(trial, error=True)
                else:
                    result = {"batch": reported[trial]} if trial in reported else None
                    searcher.on_trial_complete(trial, result=result)
                counts["completed"] += 1
            else:
                counts["adopted"] += _adopt(searcher, archs_of.get(trial, []), reported.get(trial))
    # trials that reported but had not completed at the kill, unknown to the checkpoint: nobody
    # will run them again, so what they evaluated is adopted now
    for trial, rows in reported.items():
        if trial not in finished and trial not in searcher._live:
            counts["adopted"] += _adopt(searcher, archs_of.get(trial, []), rows)
    return counts


def _remember_archs(archs_of: Dict[str, List[Dict[str, Any]]], trial: str, event: Mapping[str, Any]) -> None:
    for record in event.get("records") or []:
        if isinstance(record, dict) and isinstance(record.get("arch"), str):
            known = archs_of.setdefault(trial, [])
            arch = arch_from_json(record["arch"])
            if arch not in known:
                known.append(arch)


def _adopt(searcher, archs: List[Dict[str, Any]], rows: Optional[List[Dict[str, Any]]]) -> int:
    from raynas.arch import arch_id
    from raynas.searchers.base import _row_metrics

    by_id = {row.get("arch_id"): row for row in rows or []}
    adopted = 0
    for arch in archs:
        adopted += bool(searcher.adopt(arch, _row_metrics(by_id.get(arch_id(arch)))))
    return adopted
