"""Search through Ray Tune on the synthetic space: strategies, constraints, results."""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

import raynas
from raynas import InfeasibleConstraintError, arch_id, create_space
from raynas.constraints import CostModel, parse_constraints
from raynas.objectives import parse_objectives
from raynas.searchers import make_searcher


def synthetic_metrics(space):
    return lambda arch: {"score": space.score(arch)}


@pytest.fixture(scope="module")
def space():
    return create_space("synthetic", num_layers=8, num_choices=4, seed=3)


def test_evolution_beats_random_at_equal_budget(ray_session, space, tmp_path):
    budget, seeds = 80, range(4)
    means = {}
    for strategy in ("random", "evolution"):
        bests = []
        for seed in seeds:
            result = raynas.search(space, synthetic_metrics(space), strategy=strategy, num_samples=budget,
                                   objectives="score", batch_size=8, seed=seed, storage_path=tmp_path,
                                   progress=False, strategy_options={"population_size": 16, "sample_size": 4}
                                   if strategy == "evolution" else None)
            assert len(result.df) == budget and result.df["arch_id"].is_unique
            bests.append(result.best()["score"])
        means[strategy] = float(np.mean(bests))
    assert means["evolution"] > means["random"], means


def test_infeasible_constraint_fails_fast_with_a_clear_message(ray_session, space, tmp_path):
    start = time.monotonic()
    with pytest.raises(InfeasibleConstraintError) as info:
        raynas.search(space, synthetic_metrics(space), num_samples=10, objectives="score",
                      constraints="params<=1", storage_path=tmp_path, progress=False)
    assert time.monotonic() - start < 10
    assert "params <= 1" in str(info.value) and "at best" in str(info.value)


def test_constraints_never_admit_a_violating_arch(ray_session, space, tmp_path):
    limit = float(np.median([space.cost(space.sample(np.random.default_rng(i)))["params"] for i in range(200)]))
    result = raynas.search(space, synthetic_metrics(space), strategy="evolution", num_samples=40,
                           objectives="score", constraints=[f"params<={limit}"], batch_size=4,
                           storage_path=tmp_path, progress=False)
    assert len(result.df) == 40
    assert (result.df["params"] <= limit).all()
    for arch in result.archs():
        assert space.cost(arch)["params"] <= limit


def test_results_table_files_and_pareto(ray_session, space, tmp_path):
    result = raynas.search(space, synthetic_metrics(space), strategy="optuna:nsga2", num_samples=24,
                           objectives=["score:max", "params:min"], batch_size=4, name="mo",
                           storage_path=tmp_path, progress=False)
    assert (tmp_path / "mo" / "results.parquet").exists()
    loaded = raynas.SearchResult.load(tmp_path / "mo")
    pd.testing.assert_frame_equal(loaded.df.reset_index(drop=True), result.df.reset_index(drop=True))
    front = result.pareto()
    # no front member is dominated by any evaluated arch
    for _, f in front.iterrows():
        dominated = (result.df["score"] >= f["score"]) & (result.df["params"] <= f["params"]) & (
            (result.df["score"] > f["score"]) | (result.df["params"] < f["params"]))
        assert not dominated.any()
    best = result.best()
    assert best["score"] == result.df["score"].max()
    assert result.plot_pareto().stat().st_size > 1000


def test_nan_metrics_become_recorded_failures(ray_session, space, tmp_path):
    def flaky(arch):
        return {"score": float("nan") if arch["ops"][0] == 0 else space.score(arch)}

    result = raynas.search(space, flaky, strategy="random", num_samples=20, objectives="score",
                           batch_size=5, storage_path=tmp_path, progress=False)
    failed = result.df[result.df["error"].notna()]
    assert len(result.df) == 20 and len(failed) == sum(a["ops"][0] == 0 for a in result.archs())
    assert all("score=nan" in e for e in failed["error"])
    assert len(result.ok) == 20 - len(failed)


def _drive(searcher, space, n, results):
    """Run a searcher by hand (no Tune): suggest, 'evaluate', complete."""
    out = []
    for i in range(n):
        cfg = searcher.suggest(f"t{len(results)}")
        archs = cfg["archs"]
        out.append([arch_id(a) for a in archs])
        batch = [{"arch_id": arch_id(a), "score": space.score(a), "params": space.cost(a)["params"]} for a in archs]
        searcher.on_trial_complete(f"t{len(results)}", {"score": max(b["score"] for b in batch), "batch": batch})
        results.append(out[-1])
    return out


SAVE_RESTORE_CASES = {
    # strategy: (options, steps before the save, steps after)
    "random": (None, 12, 8),
    "evolution": ({"population_size": 6, "sample_size": 3}, 12, 8),
    "mo_evolution": ({"population_size": 6, "sample_size": 3}, 12, 8),
    "reinforce": ({"learning_rate": 0.2, "entropy_coef": 0.01}, 12, 8),
    "local_search": ({"num_init": 4}, 12, 8),
    "local_search:first": ({"num_init": 4, "first_improvement": True, "restart_samples": 2}, 12, 8),
    "grid": ({"shuffle": True}, 12, 8),
    "optuna": (None, 12, 8),
    "optuna:nsga2": (None, 12, 8),
    "optuna:cmaes": (None, 12, 8),
    "optuna:gp": ({"sampler_options": {"n_startup_trials": 8}}, 4, 1),
}
MULTI_OBJECTIVE = ("optuna:nsga2", "mo_evolution")


@pytest.mark.parametrize("strategy", list(SAVE_RESTORE_CASES))
def test_searcher_save_restore_gives_identical_next_suggestions(strategy, space, tmp_path):
    if strategy == "optuna:cmaes":
        pytest.importorskip("cmaes", reason="Optuna's CMA-ES sampler needs the cmaes package")
    options, before, after = SAVE_RESTORE_CASES[strategy]
    objectives = parse_objectives(["score:max", "params:min"] if strategy in MULTI_OBJECTIVE else "score")
    # grid enumerates the space up front: give it a small one
    target = create_space("synthetic", num_layers=4, num_choices=3, seed=3) if strategy == "grid" else space

    def fresh():
        return make_searcher(strategy.split(":first")[0], options).setup(
            target, objectives, budget=200, batch_size=2, max_concurrent=4, seed=11)

    a = fresh()
    history = []
    _drive(a, target, before, history)
    a.save(str(tmp_path / "state.json"))
    json.loads((tmp_path / "state.json").read_text())  # plain JSON
    b = fresh()
    b.restore(str(tmp_path / "state.json"))
    after_a = _drive(a, target, after, list(history))
    after_b = _drive(b, target, after, list(history))
    assert after_a == after_b
    assert len({k for batch in history + after_a for k in batch}) == 2 * (before + after)  # no repeats


def test_constraint_and_objective_parsing():
    cs = parse_constraints(["macs<=5M", "params < 1.5e6", "latency_ms>=1"])
    assert cs[0].max == 5e6 and not cs[0].strict and cs[1].strict and cs[2].min == 1
    with pytest.raises(raynas.ConfigError):
        parse_constraints("macs = 5")
    with pytest.raises(raynas.ConfigError):
        parse_objectives("weird_metric")
    assert [str(o) for o in parse_objectives(["accuracy", "lat_pixel3"])] == ["accuracy:max", "lat_pixel3:min"]


def test_cost_model_knows_only_pre_evaluation_metrics(space):
    with pytest.raises(raynas.ConfigError) as info:
        from raynas.constraints import check_constraints_feasible
        check_constraints_feasible(space, CostModel(space), parse_constraints("accuracy>=50"),
                                   np.random.default_rng(0))
    assert "cannot be checked before evaluation" in str(info.value)
