"""The Tune trainable of a search: evaluate the archs of one trial and report their metrics.

One trial holds a batch of archs (Tune costs tens of milliseconds per trial, evaluations can be
far cheaper). The trial reports once, with every arch's metrics under ``batch`` and the best
value of the primary objective flat (Tune's schedulers and dashboards read flat metrics). With a
multi-fidelity evaluator and a batch of one, it reports once per fidelity so a scheduler such as
ASHA can stop the trial early.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ray import tune

from raynas.arch import Arch
from raynas.evaluators.base import Evaluator
from raynas.evaluators.batch import evaluate_batch, sanitize_metrics
from raynas.registry import TRAINABLES

FIDELITY_FILE = "fidelity.json"


def _summary(rows: List[Dict[str, Any]], metric: str, mode: str) -> Dict[str, Any]:
    values = [r[metric] for r in rows if metric in r and "error" not in r]
    if values:
        best = max(values) if mode == "max" else min(values)
    else:
        best = float("nan")
    return {metric: best, "num_ok": sum("error" not in r for r in rows), "num_archs": len(rows)}


def evaluate_archs(config: Dict[str, Any], evaluator: Evaluator, metric: str, mode: str,
                   multi_fidelity: bool = False, known: Optional[Mapping[str, Mapping[str, Any]]] = None) -> None:
    """Function trainable: ``config`` holds ``archs`` and ``arch_ids`` from the searcher.

    ``known`` (arch_id -> reported row) answers archs a resumed search already recorded: a trial
    that Tune re-runs after the driver died reports them as they were, without evaluating again.
    """
    archs, ids = config["archs"], config["arch_ids"]
    known = known or {}
    if multi_fidelity and len(archs) == 1 and ids[0] not in known:
        _evaluate_fidelities(evaluator, archs[0], ids[0], metric, mode)
        return
    todo = [i for i, key in enumerate(ids) if key not in known]
    rows: List[Dict[str, Any]] = [dict(known[key]) if key in known else {} for key in ids]
    if todo:
        start = time.perf_counter()
        fresh = evaluate_batch(evaluator, [archs[i] for i in todo])
        seconds = (time.perf_counter() - start) / len(todo)
        for i, row in zip(todo, fresh):
            # the arch's own time where the evaluator measured it, else the batch's average
            row.setdefault("eval_seconds", seconds)
            rows[i] = row
    for row, key in zip(rows, ids):
        row["arch_id"] = key
    # a trial of one arch shows all its metrics flat (Tune's TensorBoard and CSV loggers and the
    # dashboards read flat numbers); a batch shows the best value of the primary objective
    flat = {k: v for k, v in rows[0].items() if isinstance(v, float)} if len(rows) == 1 else {}
    tune.report({**flat, **_summary(rows, metric, mode), "batch": rows})


def _evaluate_fidelities(evaluator: Evaluator, arch: Arch, key: str, metric: str, mode: str) -> None:
    """Report once per fidelity, each report with a checkpoint naming the fidelity reached.

    Schedulers that pause trials (HyperBand) restart the function from its last checkpoint:
    the fidelities already reported are then skipped, so a resumed trial continues where it
    paused instead of reporting its first fidelities again.
    """
    done = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            done = int(json.loads((Path(folder) / FIDELITY_FILE).read_text())["level"])
    start = time.perf_counter()
    for level, metrics in enumerate(evaluator.evaluate_fidelities(arch), start=1):
        if level <= done:
            continue  # reported before the pause
        row = {**sanitize_metrics(metrics), "arch_id": key, "fidelity": float(level),
               "eval_seconds": time.perf_counter() - start}
        with tempfile.TemporaryDirectory(prefix="raynas-fidelity-") as folder:
            (Path(folder) / FIDELITY_FILE).write_text(json.dumps({"level": level, "arch_id": key}))
            tune.report({**_summary([row], metric, mode), **{k: v for k, v in row.items() if k != "arch_id"},
                         "batch": [row]}, checkpoint=tune.Checkpoint.from_directory(folder))


TRAINABLES.register("evaluate", evaluate_archs)
__all__ = ["evaluate_archs", "sanitize_metrics"]
