"""One search path: ``raynas.search`` (Tune), the in-process driver and ``raynas.resume_search``
share one configuration object and one batch evaluation helper, so they propose, evaluate and
record the same things; a pool search records how to rebuild its pool, so Python resumes it
without being handed an evaluator."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from ray import cloudpickle

import raynas
from raynas.errors import ConfigError, SearchInterrupted
from raynas.evaluators.base import Evaluator
from raynas.evaluators.batch import evaluate_batch
from raynas.search_config import SearchConfig
from raynas.searchers.inline import run_inline
from tune_helpers import InterruptAfter

# Tune's trial processes do not have tests/ on their path: this module's evaluator travels by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
COMPARED = ["order", "arch_id", "arch", "score", "error"]
TINY_OFA = {"width_mult": 0.25, "stage_strides": [2, 2, 2, 1, 2], "resolutions": [16]}


class ScoreOrFail(Evaluator):
    """The synthetic space's score; archs whose id starts with one of ``fail`` raise, and a
    batch holding one of them fails as a whole (so the helper's one-at-a-time fallback runs)."""

    metrics = ("score",)

    def __init__(self, fail: str = "0123") -> None:
        self.space = raynas.create_space("synthetic", num_layers=6, num_choices=4, seed=1)
        self.fail = tuple(fail)

    def evaluate(self, archs):
        if any(raynas.arch_id(a)[0] in self.fail for a in archs):
            if len(archs) == 1:
                raise ValueError(f"cannot score {raynas.arch_id(archs[0])}")
            raise RuntimeError("a batch with a bad arch")
        return [{"score": self.space.score(a)} for a in archs]


def _values(column) -> list:
    """A column's values with every missing value as None (NaN != NaN)."""
    import pandas as pd

    return [None if pd.isna(v) else v for v in column.tolist()]


def _config(**overrides):
    options = dict(strategy="evolution", num_samples=40, objectives="score", seed=7, batch_size=4,
                   strategy_options={"population_size": 8, "sample_size": 3})
    options.update(overrides)
    space = raynas.create_space("synthetic", num_layers=6, num_choices=4, seed=1)
    return SearchConfig.create(space, **options)


def test_the_batch_helper_isolates_failing_archs_and_bad_numbers():
    evaluator = ScoreOrFail()
    rng = np.random.default_rng(0)
    archs = [evaluator.space.sample(rng) for _ in range(30)]
    rows = evaluate_batch(evaluator, archs)
    for arch, row in zip(archs, rows):
        if raynas.arch_id(arch)[0] in evaluator.fail:
            assert row == {"error": f"ValueError: cannot score {raynas.arch_id(arch)}"}
        else:
            assert row == {"score": evaluator.space.score(arch)}
    assert any("error" in r for r in rows) and any("error" not in r for r in rows)

    class Odd(Evaluator):
        def evaluate(self, archs):
            return [{"a": float("nan"), "b": "x", "c": True, "d": 2}, {"error": "kept as it is", "e": 1.0}][:len(archs)]

    assert evaluate_batch(Odd(), archs[:2]) == [
        {"c": 1.0, "d": 2.0, "error": "non-finite or non-numeric metrics: a=nan, b='x' is not a number"},
        {"e": 1.0, "error": "kept as it is"}]

    class Short(Evaluator):
        def evaluate(self, archs):
            return []

    assert evaluate_batch(Short(), archs[:2]) == [{"error": "RuntimeError: evaluator returned 0 results for 1 arch"}] * 2


def test_search_and_the_in_process_driver_propose_and_record_the_same(ray_session, tmp_path):
    """One configuration object, two drivers: with one trial in flight, Tune's search and the
    in-process driver give the same table (archs, order, scores, failure rows)."""
    config = _config()
    inline = run_inline(config, ScoreOrFail())
    tuned = raynas.search(config.with_batching(4, 1), ScoreOrFail(), name="tuned", storage_path=tmp_path,
                          progress=False)
    assert len(inline.df) == len(tuned.df) == 40
    for column in COMPARED:
        assert _values(inline.df[column]) == _values(tuned.df[column]), column
    assert inline.df["error"].notna().any()   # the failure path was compared too
    saved = json.loads((tmp_path / "tuned" / "search.json").read_text())
    assert {k: saved[k] for k in config.to_json() if k not in ("batch_size", "max_concurrent")} == \
        {k: v for k, v in inline.meta.items() if k in config.to_json() and k not in ("batch_size", "max_concurrent")}
    with pytest.raises(ConfigError, match="also num_samples"):
        raynas.search(config, ScoreOrFail(), num_samples=5, storage_path=tmp_path, progress=False)


def _checkpoint(path):
    from raynas.checkpoint import save_supernet_checkpoint

    space = raynas.create_space("ofa_mbv3_cifar", **TINY_OFA)
    import torch

    torch.manual_seed(0)
    return save_supernet_checkpoint(path, space.build_supernet(num_classes=10),
                                    {"num_classes": 10, "dataset": "digits"})


def test_resume_search_rebuilds_the_pool_from_search_json(ray_session, tmp_path):
    """A pool search from Python, interrupted, resumed with ``raynas.resume_search(path)`` alone:
    the pool is rebuilt from the checkpoint spec search.json recorded, and the table equals the
    uninterrupted search's row for row."""
    checkpoint = _checkpoint(tmp_path / "supernet")
    space = raynas.create_space("ofa_mbv3_cifar", **TINY_OFA)
    options = dict(strategy="evolution", num_samples=10, objectives="accuracy", batch_size=2, max_concurrent=1,
                   seed=3, strategy_options={"population_size": 4, "sample_size": 2}, storage_path=tmp_path,
                   progress=False)
    with raynas.SupernetPool.from_checkpoint(str(checkpoint), num_actors=1, batch_size=64) as pool:
        whole = raynas.search(space, pool, name="whole", **options)
        with pytest.raises(SearchInterrupted):
            raynas.search(space, pool, name="cut", callbacks=[InterruptAfter(2)], **options)
    meta = json.loads((tmp_path / "cut" / "search.json").read_text())
    assert meta["status"] == "interrupted"
    assert meta["evaluator"] == {"kind": "checkpoint", "checkpoint": str(checkpoint.resolve()), "actors": 1,
                                 "batch_size": 64}   # seed and calibration: the training run's own
    assert 4 <= len(raynas.SearchResult.load(tmp_path / "cut").df) < 10

    resumed = raynas.resume_search(tmp_path / "cut", progress=False)   # no evaluator: rebuilt from search.json
    columns = ["order", "arch_id", "arch", "accuracy", "error"]
    assert len(resumed.df) == 10 and resumed.df["error"].isna().all()
    for column in columns:
        assert _values(resumed.df[column]) == _values(whole.df[column]), column
    assert json.loads((tmp_path / "cut" / "search.json").read_text())["status"] == "finished"


def test_resume_search_without_a_recorded_evaluator_asks_for_one(ray_session, tmp_path):
    config = _config(num_samples=8)
    with pytest.raises(SearchInterrupted):
        raynas.search(config.with_batching(4, 1), ScoreOrFail(), name="fn", storage_path=tmp_path, progress=False,
                      callbacks=[InterruptAfter(1)])
    with pytest.raises(ConfigError, match="does not record how to rebuild its evaluator"):
        raynas.resume_search(tmp_path / "fn", progress=False)
    result = raynas.resume_search(tmp_path / "fn", ScoreOrFail(), progress=False)
    assert len(result.df) == 8
