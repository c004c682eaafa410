"""Evaluate a batch of archs, falling back one arch at a time: the one place that turns an
evaluator's answers (or exceptions) into one clean metrics row per arch.

The Tune trainable, the in-process driver and the pool's workers all call
:func:`evaluate_batch`, so a failing arch, a wrong number of results, a NaN or a non-numeric
metric is recorded the same way whichever path evaluated it.
"""
from __future__ import annotations

import math
import traceback
from typing import Any, Dict, List, Mapping, Sequence

from raynas.arch import Arch

#: longest error message kept in a row (a traceback's last line, cut short)
MAX_ERROR_CHARS = 500


def sanitize_metrics(metrics: Any) -> Dict[str, Any]:
    """Keep plain finite numbers; a NaN/inf or non-numeric metric becomes an error message.

    A row that already carries an ``error`` (e.g. from a pool worker, which sanitized it there)
    keeps that message as it is.
    """
    if not isinstance(metrics, Mapping):
        return {"error": f"evaluator returned {type(metrics).__name__}, not a dict of metrics"}
    out: Dict[str, Any] = {}
    bad = []
    error = metrics.get("error")
    for key, value in metrics.items():
        if key == "error" and isinstance(value, str):
            continue
        if isinstance(value, bool):
            value = float(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            bad.append(f"{key}={value!r} is not a number")
            continue
        if not math.isfinite(number):
            bad.append(f"{key}={number}")
            continue
        out[str(key)] = number
    if isinstance(error, str) and error:
        out["error"] = error[:MAX_ERROR_CHARS]
    elif bad:
        out["error"] = ("non-finite or non-numeric metrics: " + ", ".join(bad))[:MAX_ERROR_CHARS]
    return out


def evaluate_batch(evaluator: Any, archs: Sequence[Arch]) -> List[Dict[str, Any]]:
    """One sanitized metrics row per arch, in order. If the batch call fails (raises, or returns
    the wrong number of results), the archs are evaluated one at a time so one bad arch only
    fails itself; its row then holds ``error`` (the exception's last line)."""
    archs = list(archs)
    if not archs:
        return []
    try:
        results = evaluator.evaluate(archs)
        if len(results) != len(archs):
            raise RuntimeError(f"evaluator returned {len(results)} results for {len(archs)} archs")
        return [sanitize_metrics(r) for r in results]
    except Exception:  # noqa: BLE001 - one bad arch must not lose the whole batch
        if len(archs) == 1:
            return [{"error": last_error_line()}]
    out = []
    for arch in archs:
        try:
            results = evaluator.evaluate([arch])
            if len(results) != 1:
                raise RuntimeError(f"evaluator returned {len(results)} results for 1 arch")
            out.append(sanitize_metrics(results[0]))
        except Exception:  # noqa: BLE001
            out.append({"error": last_error_line()})
    return out


def last_error_line() -> str:
    """The last line of the exception being handled (``Type: message``), cut short."""
    lines = traceback.format_exc().strip().splitlines()
    return lines[-1][:MAX_ERROR_CHARS] if lines else "unknown error"
