"""Search through Ray Tune on the synthetic space: strategies, constraints, results."""
from __future__ import annotations

import json
import time
import warnings

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
    "optuna": (None, 12, 8),                   # TPE
    "optuna:nsga2": ({"sampler_options": {"population_size": 8}}, 12, 8),   # past its first generations
    "optuna:cmaes": ({"sampler_options": {"n_startup_trials": 6}}, 12, 8),
    "optuna:gp": ({"sampler_options": {"n_startup_trials": 4}}, 4, 2),     # GP fits from the 5th trial on
    "optuna:random": (None, 12, 8),
    "optuna:qmc": (None, 12, 8),
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
    with warnings.catch_warnings():
        # an Optuna replay that diverged would rebuild the study and warn: that must not happen here
        warnings.filterwarnings("error", message="replaying the Optuna study diverged")
        b.restore(str(tmp_path / "state.json"))
    saved_calls = len(a.history.calls) if strategy.startswith("optuna") else 0
    after_a = _drive(a, target, after, list(history))
    after_b = _drive(b, target, after, list(history))
    assert after_a == after_b
    assert len({k for batch in history + after_a for k in batch}) == 2 * (before + after)  # no repeats
    if saved_calls:
        # every raw Optuna ask after the restore, duplicates the base skipped included, is equal:
        # a sampler whose random state were not restored would re-propose its early archs, which
        # the base would skip, and could still end on the same new archs (random does)
        assert a.history.calls[saved_calls:] == b.history.calls[saved_calls:]
        assert len(a.history.calls) > saved_calls


OPTUNA_SAMPLER_CASES = {"tpe": {}, "nsga2": {"population_size": 4}, "cmaes": {"n_startup_trials": 3},
                        "gp": {"n_startup_trials": 3}, "random": {}, "qmc": {}}


def _optuna_trials(searcher):
    return [(t.number, t.state.name, t.params, t.values) for t in searcher.inner._ot_study.trials]


@pytest.mark.parametrize("sampler", list(OPTUNA_SAMPLER_CASES))
def test_optuna_state_saved_with_trials_in_flight_replays_exactly(sampler, space, tmp_path):
    """Saved while two trials are still running (out-of-order completions before that): the
    restored study has the same trials, the running ones complete into it, and the next
    suggestions are the uninterrupted run's."""
    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="Optuna's CMA-ES sampler needs the cmaes package")
    multi = sampler == "nsga2"
    objectives = parse_objectives(["score:max", "params:min"] if multi else "score")

    def fresh():
        return make_searcher(f"optuna:{sampler}", {"sampler_options": OPTUNA_SAMPLER_CASES[sampler]}).setup(
            space, objectives, budget=40, batch_size=1, max_concurrent=3, seed=7)

    def complete(searcher, trial_id, config):
        arch = config["archs"][0]
        row = {"arch_id": arch_id(arch), "score": space.score(arch), "params": space.cost(arch)["params"]}
        searcher.on_trial_complete(trial_id, {"score": row["score"], "batch": [row]})

    a = fresh()
    configs = {f"t{i}": a.suggest(f"t{i}") for i in range(3)}
    for step in range(3, 9):                     # keep three in flight, complete the oldest but one first
        done = sorted(configs)[1] if step % 2 else sorted(configs)[0]
        complete(a, done, configs.pop(done))
        configs[f"t{step:02d}"] = a.suggest(f"t{step:02d}")
    done = sorted(configs)[0]
    complete(a, done, configs.pop(done))
    a.save(str(tmp_path / "state.json"))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["live"] and len(state["strategy_state"]["pending"]) == len(configs) == 2
    b = fresh()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="replaying the Optuna study diverged")
        b.restore(str(tmp_path / "state.json"))
    assert _optuna_trials(b) == _optuna_trials(a)
    for searcher in (a, b):
        for trial_id, config in sorted(configs.items()):
            complete(searcher, trial_id, config)
    assert _optuna_trials(b) == _optuna_trials(a)
    assert [a.suggest(f"n{i}")["arch_ids"] for i in range(3)] == [b.suggest(f"n{i}")["arch_ids"] for i in range(3)]
    assert _optuna_trials(b) == _optuna_trials(a)


def test_optuna_replay_that_diverges_rebuilds_the_recorded_study_and_warns(space, tmp_path):
    """A history whose asks the sampler no longer reproduces (another Optuna version) keeps its
    recorded trials exactly, and says the next suggestions may differ."""
    def fresh():
        return make_searcher("optuna:tpe", {"sampler_options": {"n_startup_trials": 3}}).setup(
            space, parse_objectives("score"), budget=40, batch_size=2, seed=3)

    a = fresh()
    _drive(a, space, 5, [])
    state = a.get_state()
    calls = state["strategy_state"]["history"]["calls"]
    first = next(c for c in calls if c["op"] == "ask")
    name = sorted(first["params"])[0]
    choices = next(d.choices for d in space.decisions() if d.name == name)
    first["params"][name] = next(c for c in choices if c != first["params"][name])   # another valid value
    state["strategy_state"]["history"]["optuna_version"] = "0.0.1"
    (tmp_path / "state.json").write_text(json.dumps(state))
    b = fresh()
    with pytest.warns(RuntimeWarning, match=r"diverged at call 0 \(the state was saved with Optuna 0.0.1"):
        b.restore(str(tmp_path / "state.json"))
    recorded = [(t.params, t.values) for t in a.inner._ot_study.trials]
    recorded[0] = (first["params"], recorded[0][1])
    assert [(t.params, t.values) for t in b.inner._ot_study.trials] == recorded
    cfg = b.suggest("next")
    assert len(cfg["archs"]) == 2 and not set(cfg["arch_ids"]) & set(state["seen"])


@pytest.mark.parametrize("damage", ["value outside the space", "unknown op", "missing values", "other decisions"])
def test_damaged_optuna_history_is_a_checkpoint_error(space, tmp_path, damage):
    searcher = make_searcher("optuna").setup(space, parse_objectives("score"), budget=20, batch_size=2, seed=3)
    _drive(searcher, space, 3, [])
    state = searcher.get_state()
    history = state["strategy_state"]["history"]
    ask = next(c for c in history["calls"] if c["op"] == "ask")
    tell = next(c for c in history["calls"] if c["op"] == "tell")
    if damage == "value outside the space":
        ask["params"][sorted(ask["params"])[0]] = 99
    elif damage == "unknown op":
        tell["op"] = "sell"
    elif damage == "missing values":
        del tell["values"]
    else:
        history["distributions"].pop(sorted(history["distributions"])[0])
    (tmp_path / "state.json").write_text(json.dumps(state))
    fresh = make_searcher("optuna").setup(space, parse_objectives("score"), budget=20, batch_size=2, seed=3)
    with pytest.raises(raynas.CheckpointError, match="damaged"):
        fresh.restore(str(tmp_path / "state.json"))


def test_optuna_searcher_pickles_as_its_history(space):
    """Tune pickles the searcher with the Tuner (tuner.pkl): NSGA-II's sampler holds a lock in
    Optuna 5, so the study must travel as its history and come back equal."""
    import pickle

    objectives = parse_objectives(["score:max", "params:min"])
    a = make_searcher("optuna:nsga2", {"sampler_options": {"population_size": 4}}).setup(
        space, objectives, budget=40, batch_size=2, seed=5)
    _drive(a, space, 4, [])
    b = pickle.loads(pickle.dumps(a))
    assert _optuna_trials(b) == _optuna_trials(a)
    assert _drive(a, space, 4, []) == _drive(b, space, 4, [])


def test_optuna_state_restore_benchmark_smoke(tmp_path):
    """benchmarks/optuna_state_restore.py on tiny settings: every case it records carries the
    proposals its verdicts are computed from, and the replay verdict is the exact one."""
    from benchmarks import optuna_state_restore

    out = tmp_path / "restore.json"
    report = optuna_state_restore.main(["--samplers", "tpe,nsga2", "--lengths", "12", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [(c["sampler"], c["history_length"]) for c in report["cases"]] == [("tpe", 12), ("nsga2", 12)]
    for case in report["cases"]:
        truth = case["next_uninterrupted"]
        assert len(truth) == len(set(truth)) == optuna_state_restore.NEXT   # one arch per trial, none repeated
        assert case["replay_equal"] and case["next_replayed"] == truth and case["replay_first_difference"] is None
        assert case["add_trial_equal"] == (case["next_add_trial"] == truth)
    assert report["replay_exact_everywhere"] and report["optuna"]

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


def test_searcher_state_code_imports_no_object_serialiser():
    """Searcher state is plain JSON: no module of raynas/searchers imports pickle (or a relative
    that can run code on load), nor base64 (which hid a pickle in the JSON state before)."""
    import ast
    from pathlib import Path

    banned = {"pickle", "cloudpickle", "dill", "marshal", "shelve", "joblib", "base64"}
    modules = sorted((Path(raynas.__file__).parent / "searchers").glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & banned, (path.name, imported & banned)
