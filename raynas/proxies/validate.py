"""Self-validation: check proxies against trained accuracies before a search relies on them.

Zero-cost proxies are known to lose, or even invert, their correlation on some tasks, so a
search should first score a small sample whose accuracies are known (tabular, weight-inherited
or briefly trained) and fall back to params / FLOPs where a proxy does not hold up.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator
from raynas.proxies.evaluator import DEFAULT_PROXIES, ProxyEvaluator
from raynas.proxies.ranking import rank_correlations

FALLBACK_PROXIES = ("params", "flops")
MIN_ARCHS = 5


@dataclass
class ProxyValidation:
    """Outcome of :func:`validate_proxies`."""

    truth_metric: str
    threshold: float
    num_archs: int
    correlations: Dict[str, Dict[str, float]]
    passed: List[str]
    failed: List[str]
    recommended: Optional[str]
    fallback: bool
    messages: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"proxy rank correlation with '{self.truth_metric}' on {self.num_archs} archs "
                 f"(threshold rho >= {self.threshold:g})",
                 f"{'proxy':<16}{'spearman':>10}{'kendall':>10}  verdict"]
        for name, c in sorted(self.correlations.items(), key=lambda kv: -_or_low(kv[1]["spearman"])):
            if name in self.passed:
                verdict = "ok"
            elif name in self.failed:
                verdict = "below threshold"
            else:  # params / FLOPs, scored as the fallback, not requested
                verdict = "fallback" + (" (below threshold)" if _or_low(c["spearman"]) < self.threshold else "")
            lines.append(f"{name:<16}{c['spearman']:>10.3f}{c['kendall']:>10.3f}  {verdict}")
        lines.append(f"recommended: {self.recommended}" + (" (fallback)" if self.fallback else ""))
        lines.extend(self.messages)
        return "\n".join(lines)


def _or_low(x: float) -> float:
    return -math.inf if x is None or math.isnan(x) else x


def validate_proxies(space: Any, evaluator_of_truth: Evaluator, archs: Sequence[Arch],
                     proxies: Sequence[str] = DEFAULT_PROXIES, threshold: float = 0.3, *,
                     truth_metric: str = "accuracy", proxy_evaluator: Optional[ProxyEvaluator] = None,
                     warn: bool = True, **proxy_evaluator_options: Any) -> ProxyValidation:
    """Score ``archs`` with each proxy and with ``evaluator_of_truth``; report Spearman ρ and
    Kendall τ per proxy and recommend the best proxy whose ρ >= ``threshold``.

    If none reaches it, recommend the better of params / FLOPs (``fallback=True``) and warn.
    ``proxy_evaluator`` defaults to ``ProxyEvaluator(space, proxies + params/flops,
    **proxy_evaluator_options)`` (pass ``batch=`` or ``data_free=True`` through the options).
    """
    archs = list(archs)
    if len(archs) < MIN_ARCHS:
        raise ConfigError(f"validate_proxies needs at least {MIN_ARCHS} archs with known accuracy, "
                          f"got {len(archs)}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold is a Spearman rho in [0, 1], got {threshold}")
    names = list(dict.fromkeys(list(proxies) + list(FALLBACK_PROXIES)))
    if proxy_evaluator is None:
        proxy_evaluator = ProxyEvaluator(space, names, **proxy_evaluator_options)
    missing = [n for n in names if n not in proxy_evaluator.metrics]
    if missing:
        raise ConfigError(f"the proxy evaluator does not report {missing}; it reports "
                          f"{list(proxy_evaluator.metrics)}")

    truth_rows = evaluator_of_truth.evaluate(archs)
    if any(truth_metric not in row for row in truth_rows):
        raise ConfigError(f"the truth evaluator does not report '{truth_metric}'; it reports "
                          f"{sorted(truth_rows[0])}. Pass truth_metric=<one of those>.")
    truth = [row[truth_metric] for row in truth_rows]
    scores = proxy_evaluator.evaluate(archs)

    correlations = {n: rank_correlations([s[n] for s in scores], truth) for n in names}
    passed = [n for n in proxies if _or_low(correlations[n]["spearman"]) >= threshold]
    failed = [n for n in proxies if n not in passed]
    messages: List[str] = []
    for n in failed:
        messages.append(f"proxy '{n}' has Spearman rho {correlations[n]['spearman']:.3f} < {threshold:g} "
                        f"against '{truth_metric}' on {len(archs)} archs: do not rank by it on this task")
    if passed:
        recommended: Optional[str] = max(passed, key=lambda n: _or_low(correlations[n]["spearman"]))
        fallback = False
    else:
        recommended = max(FALLBACK_PROXIES, key=lambda n: _or_low(correlations[n]["spearman"]))
        fallback = True
        rho = correlations[recommended]["spearman"]
        messages.append(f"no requested proxy reaches rho >= {threshold:g}; falling back to "
                        f"'{recommended}' (rho {rho:.3f})")
        if _or_low(rho) < threshold:
            messages.append("params / FLOPs do not reach the threshold either: evaluate candidates "
                            "by weight-inherited or trained accuracy instead of zero-cost proxies")
    if warn:
        for m in messages:
            warnings.warn(m, RuntimeWarning, stacklevel=2)
    return ProxyValidation(truth_metric, float(threshold), len(archs), correlations, passed, failed,
                           recommended, fallback, messages)
