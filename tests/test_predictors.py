"""Accuracy predictors, their safe save/load, the surrogate evaluator and predict-then-verify."""
from __future__ import annotations

import json

import numpy as np
import pytest

import raynas
from raynas import CheckpointError, ConfigError, DataError, arch_id, create_space
from raynas.predictors import (TargetTransform, from_pairs, load_predictor, load_training_data,
                               make_predictor, ranking_metrics)
from raynas.predictors.guided import predict_then_verify
from raynas.predictors.surrogate import SurrogateEvaluator
from raynas.searchers.inline import run_inline

SMALL_MLP = {"hidden": [32, 32, 32], "epochs": 60}


@pytest.fixture(scope="module")
def space():
    return create_space("synthetic", num_layers=8, num_choices=4, seed=3)


@pytest.fixture(scope="module")
def sampled(space):
    rng = np.random.default_rng(0)
    archs = {arch_id(a): a for a in (space.sample(rng) for _ in range(400))}
    archs = list(archs.values())
    return archs, np.array([space.score(a) for a in archs])


def test_ranking_metrics_on_known_orders():
    y = np.arange(10.0)
    assert ranking_metrics(y, 2 * y + 1) == pytest.approx({"kendall_tau": 1.0, "spearman_rho": 1.0,
                                                           "rmse": float(np.sqrt(np.mean((y + 1) ** 2))), "n": 10})
    assert ranking_metrics(y, -y)["kendall_tau"] == pytest.approx(-1.0)
    assert ranking_metrics(y, np.zeros(10))["kendall_tau"] == 0.0  # a constant ranks nothing
    with pytest.raises(DataError):
        ranking_metrics(y, y[:5])


@pytest.mark.parametrize("kind,options", [("mlp", SMALL_MLP), ("gbt", {"n_estimators": 150})])
@pytest.mark.parametrize("target", ["standard", "quantile"])
def test_predictor_learns_and_round_trips_identically(space, sampled, tmp_path, kind, options, target):
    archs, y = sampled
    predictor = make_predictor(kind, space, metric="score", seed=1, target=target, **options)
    predictor.fit(archs[:250], y[:250])
    held_out = predictor.score(archs[250:], y[250:])
    assert held_out["kendall_tau"] > 0.5, held_out  # the score is additive + pairwise: learnable

    path = predictor.save(tmp_path / "pred")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "predictor.json"]
    config = json.loads((path / "predictor.json").read_text())
    assert config["space"] == space.spec() and config["encoding_version"] == space.encoding_version
    loaded = load_predictor(path)  # rebuilds the space from the saved spec
    fresh = [space.sample(np.random.default_rng(5)) for _ in range(50)]
    assert np.array_equal(loaded.predict(fresh), predictor.predict(fresh))
    assert np.array_equal(load_predictor(path, space).predict(archs), predictor.predict(archs))
    assert loaded.metric == "score" and loaded.fit_info["num_train"] == 250


def test_mlp_numpy_prediction_equals_the_torch_forward_it_was_fitted_with(space, sampled):
    """Fitting is torch, prediction numpy: the two forwards of the fitted weights agree, and a
    refit with the same seed gives the same weights."""
    import torch
    import torch.nn.functional as F

    archs, y = sampled
    options = {"hidden": [16, 8], "epochs": 5}
    predictor = make_predictor("mlp", space, seed=2, **options).fit(archs[:60], y[:60])
    again = make_predictor("mlp", space, seed=2, **options).fit(archs[:60], y[:60])
    assert all(np.array_equal(a, b) for a, b in zip(predictor.arrays().values(), again.arrays().values()))
    x = np.stack([space.encode(a) for a in archs[60:90]])
    h = torch.from_numpy(x).double()
    (layers,) = predictor.members
    for i, (w, b) in enumerate(layers):
        h = F.linear(h, torch.from_numpy(w).double(), torch.from_numpy(b).double())
        h = F.relu(h) if i < len(layers) - 1 else h
    np.testing.assert_allclose(predictor._predict(x), h[:, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_gbt_numpy_prediction_equals_scikit_learn(space, sampled):
    from sklearn.ensemble import GradientBoostingRegressor

    archs, y = sampled
    predictor = make_predictor("gbt", space, seed=4, n_estimators=80, max_depth=3).fit(archs[:200], y[:200])
    # the same model, fitted by scikit-learn with the random_state the predictor derives from its seed
    model = GradientBoostingRegressor(n_estimators=80, learning_rate=predictor.learning_rate, max_depth=3,
                                      min_samples_leaf=predictor.min_samples_leaf, subsample=predictor.subsample,
                                      random_state=int(np.random.default_rng(4).integers(2**31 - 1)))
    t = predictor.target
    X = np.stack([space.encode(a) for a in archs])
    model.fit(X[:200], (y[:200] - t.mean) / t.std)
    np.testing.assert_allclose(predictor.predict(archs), t.mean + t.std * model.predict(X), rtol=0, atol=1e-9)


def test_load_refuses_another_space_or_encoding(space, sampled, tmp_path):
    archs, y = sampled
    path = make_predictor("gbt", space, n_estimators=20).fit(archs[:50], y[:50]).save(tmp_path / "p")
    other_options = create_space("synthetic", num_layers=8, num_choices=4, seed=4)
    with pytest.raises(CheckpointError, match="fitted on space 'synthetic'"):
        load_predictor(path, other_options)
    bumped = create_space("synthetic", num_layers=8, num_choices=4, seed=3)
    bumped.encoding_version = "2"  # what a space does when it changes encode()
    with pytest.raises(CheckpointError, match="encoding version '1'.*encodes version '2'.*refit"):
        load_predictor(path, bumped)
    with pytest.raises(CheckpointError, match="fitted on space"):
        load_predictor(path, create_space("nb201"))


def test_load_refuses_damaged_files(space, sampled, tmp_path):
    archs, y = sampled
    path = make_predictor("mlp", space, **{**SMALL_MLP, "epochs": 2}).fit(archs[:20], y[:20]).save(tmp_path / "p")
    data = (path / "arrays.safetensors").read_bytes()
    (path / "arrays.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"arrays\.safetensors is not the file .*predictor\.json"):
        load_predictor(path)
    config = json.loads((path / "predictor.json").read_text())
    del config["files"]   # written before raynas recorded digests: the file is parsed, and refused
    (path / "predictor.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_predictor(path)
    (path / "arrays.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_predictor(path)
    with pytest.raises(ConfigError, match="not fitted"):
        make_predictor("gbt", space).predict(archs[:2])
    with pytest.raises(ConfigError, match="unknown predictor kind"):
        make_predictor("svm", space)
    with pytest.raises(ConfigError, match="unknown target transform"):
        TargetTransform("log")


def test_quantile_target_is_monotone_and_invertible():
    t = TargetTransform("quantile")
    y = np.random.default_rng(0).gamma(2.0, size=40)
    t.fit(y)
    np.testing.assert_allclose(t.inverse(t.forward(y)), y, atol=1e-12)
    z = np.linspace(-6, 6, 500)
    assert np.all(np.diff(t.inverse(z)) >= 0) and t.inverse(np.array([6.0]))[0] > y.max()


def test_training_data_from_results_and_tables(space, sampled, tmp_path):
    import pandas as pd

    archs, y = sampled
    frame = pd.DataFrame({"arch": [raynas.canonical_json(a) for a in archs[:30]] + [raynas.canonical_json(archs[0])],
                          "score": list(y[:30]) + [123.0], "error": [None] * 29 + ["boom", None]})
    frame.to_parquet(tmp_path / "results.parquet")
    data = load_training_data(space, tmp_path, metric="score")
    assert len(data) == 29  # the failed row dropped, the duplicate of archs[0] keeps its first value
    assert data.y[0] == y[0] and data.X.shape == (29, space.encoding_size)
    with pytest.raises(DataError, match="no column 'accuracy'"):
        load_training_data(space, tmp_path)


def test_training_data_from_the_nb201_table():
    from conftest import shared_data_path

    table = shared_data_path("nb201/nb201_cifar10.csv")
    import pandas as pd
    frame = pd.read_csv(table, nrows=200)
    nb201 = create_space("nb201")
    data = load_training_data(nb201, frame, metric="accuracy", key="arch_str", column="c10valid_valid_12ep")
    assert len(data) == 200 and data.X.shape == (200, 30)
    assert np.allclose(data.y, frame["c10valid_valid_12ep"])


def test_run_inline_respects_budget_dedup_and_constraints(space):
    evaluator = raynas.FunctionEvaluator(lambda a: {"score": space.score(a)})
    result = run_inline(space, evaluator, "evolution", 60, constraints="params<=40", objectives="score",
                        strategy_options={"population_size": 10, "sample_size": 3}, batch_size=7, seed=2)
    df = result.df
    assert len(df) == 60 and df["arch_id"].is_unique and (df["params"] <= 40).all()
    assert np.allclose(df["score"], [space.score(a) for a in result.archs()])


def test_surrogate_evaluator_through_raynas_search(ray_session, space, sampled, tmp_path):
    archs, y = sampled
    predictor = make_predictor("gbt", space, metric="score", n_estimators=50).fit(archs[:100], y[:100])
    surrogate = SurrogateEvaluator(predictor)
    assert surrogate.metrics == ("score", "params")
    result = raynas.search(space, surrogate, "evolution", num_samples=24, objectives="score", batch_size=8,
                           seed=0, storage_path=tmp_path, progress=False,
                           strategy_options={"population_size": 8, "sample_size": 3})
    df = result.df
    assert len(df) == 24 and df["arch_id"].is_unique and df["error"].isna().all()
    # every reported score is the predictor's prediction for that arch
    np.testing.assert_array_equal(df["score"].to_numpy(), predictor.predict(result.archs()))


def test_predict_then_verify_spends_exactly_the_real_budget(space):
    calls = []

    def real(arch):
        calls.append(arch_id(arch))
        return {"score": space.score(arch)}

    result = predict_then_verify(space, real, 40, metric="score", predictor="gbt",
                                 predictor_options={"n_estimators": 40}, num_initial=10, top_k=6,
                                 search_samples=80, seed=0)
    df = result.evaluated
    assert len(df) == 40 and len(calls) == 40 and len(set(calls)) == 40  # no arch measured twice
    assert list(df["round"][:10]) == [0] * 10 and df["predicted"][:10].isna().all()
    assert [r["num_train"] for r in result.rounds] == [10, 16, 22, 28, 34]  # refitted on every verified arch
    assert [r["num_verified"] for r in result.rounds] == [6, 6, 6, 6, 6]
    assert df["predicted"][10:].notna().all()
    assert result.best()["score"] == df["score"].max()
    assert np.array_equal(result.best_so_far(), np.maximum.accumulate(df["score"].to_numpy()))


def test_predict_then_verify_starts_from_earlier_results(space, sampled):
    archs, y = sampled
    initial = from_pairs(space, archs[:30], y[:30], "score")
    result = predict_then_verify(space, lambda a: {"score": space.score(a)}, 12, metric="score",
                                 predictor="mlp", predictor_options=SMALL_MLP, initial=initial, top_k=4,
                                 search_samples=60, seed=1)
    assert len(result.evaluated) == 12 and (result.evaluated["round"] >= 1).all()
    assert not set(result.evaluated["arch_id"]) & {arch_id(a) for a in archs[:30]}
    assert result.rounds[0]["num_train"] == 30


def test_predictor_nb201_benchmark_smoke(tmp_path):
    import importlib.util

    from conftest import PROJECT_ROOT, shared_data_path

    table = shared_data_path("nb201/nb201_cifar10.csv")
    spec = importlib.util.spec_from_file_location("predictor_nb201", PROJECT_ROOT / "benchmarks" / "predictor_nb201.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "r.json"
    result = module.main(["--smoke", "--table", str(table), "--predictors", "mlp", "gbt", "--guided", "gbt",
                          "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["smoke"] and saved["num_archs"] == 600
    assert {(r["train_size"], r["predictor"]) for r in saved["predictor_quality"]["summary"]} == {
        (20, "mlp"), (20, "gbt"), (40, "mlp"), (40, "gbt")}
    assert all(-1 <= r["kendall_tau_mean"] <= 1 for r in saved["predictor_quality"]["summary"])
    search = saved["search"]
    assert search["seeds_done"] == 2
    assert {(r["queries"], r["method"]) for r in search["summary"]} == {
        (q, m) for q in (20, 30) for m in ("random", "evolution", "guided_gbt")}
    # the best found at 30 queries is never worse than at 20 (same runs, longer prefix)
    for m in ("random", "evolution", "guided_gbt"):
        at = {r["queries"]: r["best_signal_mean"] for r in search["summary"] if r["method"] == m}
        assert at[30] >= at[20]
    assert result["search"]["verdicts"].keys() == {"guided_gbt_ge_evolution_at_20", "guided_gbt_ge_evolution_at_30"}
