"""When a finished search is a failure: every arch failed, too many failed, or fewer archs were
evaluated than asked. The CLI turns these into a non-zero exit with one line naming the
problem and the fix; Python callers may call :func:`check_outcome` on a result themselves."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional, Union

from raynas.errors import ConfigError, SearchFailedError, shorten

#: share of failed evaluations above which a search is a failure (``--max-failures``)
DEFAULT_MAX_FAILURES = 0.1


def parse_fraction(value: Union[str, float, int, None], what: str = "--max-failures") -> float:
    """``0.1``, ``"0.1"`` or ``"10%"`` -> 0.1 (within [0, 1])."""
    if value is None:
        return DEFAULT_MAX_FAILURES
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a fraction (0.1) or a percentage (10%), got {shorten(text, 40)}") from None
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"{what} must lie within [0, 1] (0% to 100%), got {shorten(text, 40)}")
    return fraction


def check_outcome(result: Any, num_samples: int, max_failures: float = DEFAULT_MAX_FAILURES,
                  where: Optional[str] = None) -> None:
    """Raise :class:`SearchFailedError` when ``result`` (a :class:`SearchResult`) is not the
    search that was asked for; ``where`` names the experiment in the message."""
    df = result.df
    total, ok = len(df), len(result.ok)
    failed = total - ok
    at = f" ({where})" if where else ""
    if total and not ok:
        raise SearchFailedError(f"every arch failed ({total} of {total}){at}; {_common_error(df)}")
    if total and failed / total > max_failures:
        raise SearchFailedError(
            f"{failed} of {total} archs failed ({100.0 * failed / total:.0f}% > {100.0 * max_failures:.0f}%, "
            f"--max-failures){at}; {_common_error(df)}. Fix the evaluator or raise --max-failures to "
            "accept them")
    if total < int(num_samples):
        exhausted = bool(result.meta.get("exhausted"))
        why = ("the strategy found no further new arch (the space, or its part satisfying the constraints, "
               "is smaller than the budget)" if exhausted else "the search stopped early")
        raise SearchFailedError(f"only {total} of {num_samples} archs were evaluated{at}: {why}")


def _common_error(df) -> str:
    """The most frequent failure message (the first one when all differ, e.g. by arch id)."""
    errors = [str(e) for e in df["error"] if isinstance(e, str) and e] if "error" in df else []
    if not errors:
        return "no failure message was recorded"
    text, count = Counter(errors).most_common(1)[0]
    if count == 1:
        return f"the first failure: {shorten(errors[0], 300)}"
    return f"the most frequent failure ({count}x): {shorten(text, 300)}"
