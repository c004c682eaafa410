"""Adaptive archs-per-trial (raynas.batching): sized from the evaluator's cost when the user gives
no batch_size, recorded in search.json, and kept by a resume."""
from __future__ import annotations

import json
import time

import pytest

import raynas
from raynas.batching import MAX_ADAPTIVE_BATCH, batch_for_cost, probe_cost, resolve_batch_size
from raynas.errors import SearchInterrupted
from raynas.evaluators.base import Evaluator, FunctionEvaluator
from raynas.evaluators.synthetic import SleepEvaluator
from tune_helpers import InterruptAfter

SPACE = dict(num_layers=6, num_choices=4, seed=1)


def test_batch_for_cost_is_a_bounded_power_of_two():
    assert batch_for_cost(0.0, 10_000, 1) == MAX_ADAPTIVE_BATCH
    assert batch_for_cost(1e-5, 10_000, 1) == MAX_ADAPTIVE_BATCH
    assert batch_for_cost(0.01, 10_000, 1) == 64            # 1 s / 10 ms = 100 -> 64
    assert batch_for_cost(0.3, 10_000, 1) == 2
    assert batch_for_cost(5.0, 10_000, 1) == 1
    assert batch_for_cost(0.0, 100, 1) == 64                 # not above the budget
    assert batch_for_cost(0.0, 100, 4) == 16                 # every slot gets work: ceil(100 / 4) = 25 -> 16
    assert batch_for_cost(0.0, 1, 8) == 1


def test_a_cheap_evaluator_gets_a_large_batch_and_an_expensive_one_a_small_batch():
    space = raynas.create_space("synthetic", **SPACE)
    cheap = FunctionEvaluator(lambda arch: {"score": space.score(arch)})
    batch, how = resolve_batch_size(cheap, space, 5_000, 1, seed=0)
    assert batch == MAX_ADAPTIVE_BATCH and how["source"] == "probe" and how["cost_per_arch_s"] < 1e-3

    def slow(arch):
        time.sleep(0.15)
        return {"score": space.score(arch)}

    batch, how = resolve_batch_size(FunctionEvaluator(slow), space, 5_000, 1, seed=0)
    assert batch in (2, 4) and how["source"] == "probe" and how["cost_per_arch_s"] >= 0.15   # 1 s / 0.15 s
    # a declared cost is used without a probe; a stated batch size wins
    assert resolve_batch_size(SleepEvaluator(2.0), space, 5_000, 1, seed=0) == (
        1, {"source": "declared", "cost_per_arch_s": 2.0, "target_trial_s": 1.0, "max_batch": MAX_ADAPTIVE_BATCH})
    stated = SleepEvaluator(0.0)
    stated.preferred_batch_size = 3
    assert resolve_batch_size(stated, space, 5_000, 1, seed=0) == (3, {"source": "evaluator"})


def test_a_probe_that_fails_falls_back_and_a_probe_is_seeded():
    space = raynas.create_space("synthetic", **SPACE)

    def broken(arch):
        raise RuntimeError("no GPU here")

    assert resolve_batch_size(FunctionEvaluator(broken), space, 100, 1, seed=0)[0] == 8
    seen = []

    class Recording(Evaluator):
        metrics = ("score",)

        def evaluate(self, archs):
            seen.extend(raynas.arch_id(a) for a in archs)
            return [{"score": 0.0} for _ in archs]

    probe_cost(Recording(), space, seed=3)
    first = list(seen)
    seen.clear()
    probe_cost(Recording(), space, seed=3)
    assert seen == first and len(first) == 4


def test_search_records_the_chosen_batch_size_and_resume_keeps_it(ray_session, tmp_path):
    space = raynas.create_space("synthetic", **SPACE)
    options = dict(strategy="evolution", num_samples=32, objectives="score", max_concurrent=1, seed=2,
                   storage_path=tmp_path, progress=False)
    cheap = SleepEvaluator(0.0)
    cheap.cost_per_arch_s = 0.1          # declared: 1 s / 0.1 s -> 8 archs per trial
    whole = raynas.search(space, cheap, name="whole", **options)
    meta = json.loads((tmp_path / "whole" / "search.json").read_text())
    assert meta["batch_size"] == 8 and meta["batch_sizing"]["source"] == "declared"
    with pytest.raises(SearchInterrupted):
        raynas.search(space, cheap, name="cut", callbacks=[InterruptAfter(2)], **options)
    assert 16 <= len(raynas.SearchResult.load(tmp_path / "cut").df) < 32

    # the resumed run gets an evaluator that would be sized differently: the recorded size wins
    dearer = SleepEvaluator(0.0)
    dearer.cost_per_arch_s = 0.5
    resumed = raynas.resume_search(tmp_path / "cut", dearer, progress=False)
    assert json.loads((tmp_path / "cut" / "search.json").read_text())["batch_size"] == 8
    assert resumed.df["arch_id"].tolist() == whole.df["arch_id"].tolist()
    assert set(resumed.df.groupby("trial_id").size()) == {8}
