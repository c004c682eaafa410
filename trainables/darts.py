"""Tune trainables of differentiable search.

``darts_search_trial``: one trial = one search (space, order, schedule, seed, ...), reporting
once per epoch (temperature, derived arch, skip connections, supernet train/val accuracy, table
lookups) so Tune can sweep schedules and seeds and ASHA can stop poor searches early.
``retrain_trial``: one trial = one arch trained from scratch, reporting test accuracy per epoch.
The trial's config is a :class:`DartsSearchConfig` / :class:`RetrainConfig` as a dict, plus an
optional ``variant`` dict of options merged over it (sweeps of hand-picked combinations).
"""
from __future__ import annotations

from typing import Any, Dict

from ray import tune

from raynas.arch import canonical_json
from raynas.differentiable.config import merge_variant
from raynas.registry import TRAINABLES


def darts_search_trial(config: Dict[str, Any]) -> None:
    """Function trainable: run the search, report every epoch (``arch`` as canonical JSON)."""
    from raynas.differentiable.config import DartsSearchConfig
    from raynas.differentiable.search import DartsSearch, flat_record

    cfg = DartsSearchConfig.from_any(merge_variant(config))
    search = DartsSearch(cfg)
    method = cfg.method

    def report(record: Dict[str, Any]) -> None:
        tune.report({**flat_record(record), "method": method, "seed": cfg.seed, "order": cfg.order})

    search.fit(report)


def retrain_trial(config: Dict[str, Any]) -> None:
    """Function trainable: train ``config["arch"]`` from scratch, report every epoch."""
    from raynas.differentiable.config import RetrainConfig
    from raynas.differentiable.retraining import Retrainer

    cfg = RetrainConfig.from_any(merge_variant(config))
    trainer = Retrainer(cfg)
    arch_json = canonical_json(trainer.arch)

    def report(record: Dict[str, Any]) -> None:
        tune.report({**record, "arch": arch_json, "seed": cfg.seed})

    trainer.fit(report)


TRAINABLES.register("darts_search", darts_search_trial)
TRAINABLES.register("darts_retrain", retrain_trial)
